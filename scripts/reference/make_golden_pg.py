"""Make the golden fixture of issue 12: what parameter-golf's train_gpt.py prints for its recipe.

tests/test_golden_pg.py checks that speedlab's trainer reproduces train_gpt.py step for step. Its
numbers come from here: this script runs a CPU copy of train_gpt.py on the data and recipe of
tests/golden_pg.py and writes every step's train loss, each validation's val_loss and val_bpb, the
final val_loss and the int8+zlib roundtrip val_loss and val_bpb, with their provenance, as JSON.

    .venv/bin/python scripts/reference/make_golden_pg.py                   # reference/golden_pg/
    .venv/bin/python scripts/reference/make_golden_pg.py --write-fixture   # the committed fixture

Steps:

1. reference/parameter-golf (git-ignored, never committed here) must be at the fixture's commit.
2. golden_pg.write_data() writes the shards into reference/golden_pg/data, and a SentencePiece
   model of 1,024 pieces is trained there (train_gpt.py only runs with one, for val_bpb's byte
   counts; only val_loss is compared, so any model of the right size does: this one is trained,
   single-threaded and so deterministically, on the train tokens spelled as words). The
   committed fixture's model is lost, so val_bpb differs from its values; val_loss does not.
3. train_gpt.py is copied to reference/golden_pg/run/train_gpt_cpu.py and patched there by exact
   string replacements, each of which must match as often as expected or the script stops. The
   patches (PATCHES below) make it run eagerly on the CPU as one process and print more digits;
   the model, optimizers, data order and schedules stay train_gpt.py's own:
   - torch.cuda.synchronize, manual_seed_all and max_memory_* become no-ops: no GPU.
   - one torch thread and deterministic algorithms, as speedlab's CPU runs (tests/test_golden_pg.py
     trains speedlab on one thread): the same reduction order in both.
   - torch.compile becomes the identity (Newton-Schulz and the model): Inductor's CPU code would
     fuse and reorder differently from speedlab's eager run.
   - device cpu instead of "CUDA is required", one process, no NCCL.
   - CUDA autocast off, in training and validation: on the CPU it is a no-op anyway (with a
     warning); the body runs in the bf16 of the embedding as written, weights cast at use.
   - eval_val under no_grad instead of inference_mode: eager, Rotary's cos/sin cache made during
     step 0's validation would be an inference tensor, which training then cannot save for
     backward (torch.compile hides that). The numbers are the same.
   - no nvidia-smi call (its output only went to the log file).
   - extra log lines, "golden_pg ..." with repr() of every value: train_gpt.py prints 4 digits
     (8 for the roundtrip), too few for a 1e-6 comparison.
4. The copy runs once, with cwd reference/golden_pg/run, golden_pg.RECIPE plus the data and
   tokenizer paths as its environment and without RANK/WORLD_SIZE (so a single process).
5. Its stdout is parsed and written as JSON with the structure of
   tests/fixtures/golden_pg/train_gpt_cpu.json (default --out reference/golden_pg/...; the fixture
   itself only with --write-fixture), and the largest differences from the committed fixture are
   printed. The bf16 arithmetic depends on the CPU's vector units (see cpu in the provenance).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import golden_pg  # noqa: E402  (tests/golden_pg.py: the data, the recipe)
from reference_run import machine, patch, rel, sha256  # noqa: E402

PARAMETER_GOLF = REPO / "reference" / "parameter-golf"
WORK = REPO / "reference" / "golden_pg"
DATA = WORK / "data"
TOKENIZER = WORK / "sp1024.model"
RUN = WORK / "run"
SCRIPT = RUN / "train_gpt_cpu.py"
DEFAULT_OUT = WORK / "train_gpt_cpu.json"

NO_CUDA = """
# golden_pg (CPU copy): no GPU, so these CUDA calls do nothing.
for _name in ("synchronize", "manual_seed_all", "max_memory_allocated", "max_memory_reserved"):
    setattr(torch.cuda, _name, lambda *args, **kwargs: 0)
"""
ONE_THREAD = """# golden_pg (CPU copy): one thread, deterministic kernels, as speedlab's CPU runs.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
"""
IMPORTS_END = "from torch.nn.parallel import DistributedDataParallel as DDP\n"
CUDA_SETUP = """    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is required")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend="nccl", device_id=device)
        dist.barrier()
"""
CPU_SETUP = """    if distributed:
        raise RuntimeError("the CPU copy runs as one process")
    device = torch.device("cpu")
"""
NVIDIA_SMI = (
    "    log0(\n"
    '        subprocess.run(["nvidia-smi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,'
    " text=True, check=False).stdout,\n"
    "        console=False,\n"
    "    )\n"
)
AUTOCAST = 'with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=True):'
TRAIN_LOGGED = "        # Needed to sync whether we've reached the wallclock cap.\n"
VAL_LOGGED = "            torch.cuda.synchronize()\n            t0 = time.perf_counter()\n"
ROUNDTRIP_LOGGED = (
    '    log0(f"final_int8_zlib_roundtrip_exact val_loss:{q_val_loss:.8f}'
    ' val_bpb:{q_val_bpb:.8f}")\n'
)

# (what it does, as the provenance records it; exact text; replacement; expected count)
PATCHES = [
    (
        "torch.cuda.* calls (synchronize, manual_seed_all, max_memory_*) become no-ops",
        IMPORTS_END,
        IMPORTS_END + NO_CUDA,
        1,
    ),
    (
        "one torch thread and deterministic algorithms, as speedlab's CPU runs",
        NO_CUDA,
        NO_CUDA + ONE_THREAD,
        1,
    ),
    (
        "Newton-Schulz runs eager: torch.compile becomes the identity",
        "    zeropower_via_newtonschulz5 = torch.compile(zeropower_via_newtonschulz5)\n",
        "",
        1,
    ),
    (
        "the model runs eager: torch.compile becomes the identity",
        "compiled_model = torch.compile(base_model, dynamic=False, fullgraph=True)",
        "compiled_model = base_model",
        1,
    ),
    (
        "device cpu instead of the CUDA requirement (single process, no NCCL)",
        CUDA_SETUP,
        CPU_SETUP,
        1,
    ),
    (
        "CUDA autocast disabled (train and val): on the CPU the body runs in the bf16 of the"
        " embedding as written, linear weights cast at use",
        AUTOCAST,
        AUTOCAST.replace("enabled=True", "enabled=False"),
        3,  # warmup (not run: WARMUP_STEPS=0), training, validation
    ),
    (
        "eval_val under no_grad, not inference_mode: run eager, Rotary's cos/sin cache made at"
        " step 0's validation would be an inference tensor that training cannot save for"
        " backward (torch.compile hides this); the numbers are the same",
        "    with torch.inference_mode():\n",
        "    with torch.no_grad():\n",
        1,
    ),
    ("no nvidia-smi call (no GPU; its output only went to the log file)", NVIDIA_SMI, "", 1),
    (
        "extra logging only: every step's train_loss at full precision",
        TRAIN_LOGGED,
        '        log0(f"golden_pg step:{step} train_loss:{train_loss.item()!r}")\n' + TRAIN_LOGGED,
        1,
    ),
    (
        "extra logging only: every validation's val_loss and val_bpb at full precision",
        VAL_LOGGED,
        '            log0(f"golden_pg step:{step} val_loss:{val_loss!r} val_bpb:{val_bpb!r}")\n'
        + VAL_LOGGED,
        1,
    ),
    (
        "extra logging only: the int8+zlib roundtrip val_loss and val_bpb at full precision",
        ROUNDTRIP_LOGGED,
        ROUNDTRIP_LOGGED
        + '    log0(f"golden_pg roundtrip val_loss:{q_val_loss!r} val_bpb:{q_val_bpb!r}")\n',
        1,
    ),
]


def check_reference(golden: dict) -> str:
    """The parameter-golf checkout is at the committed fixture's commit, train_gpt.py unchanged."""
    head = subprocess.run(
        ["git", "-C", str(PARAMETER_GOLF), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    want = golden["provenance"]["parameter_golf_commit"]
    if head != want:
        sys.exit(f"{PARAMETER_GOLF} is at {head}, the fixture was made at {want}")
    if sha256(PARAMETER_GOLF / "train_gpt.py") != golden["provenance"]["train_gpt_sha256"]:
        sys.exit(f"{PARAMETER_GOLF / 'train_gpt.py'} differs from the fixture's (sha256)")
    return head


def train_tokenizer(train_manifest: Path, model_out: Path) -> None:
    """A 1,024-piece SentencePiece BPE model, trained single-threaded (deterministic) on the
    fixture's train tokens spelled as text: two letters a token, four tokens a word, one
    document a line (single-token words would leave too few merges for 1,024 pieces)."""
    import sentencepiece as spm

    from speedlab.data.shards import load_split

    letters = "abcdefghijklmnopqrstuvwxyzABCDEF"  # 32 x 32 = 1,024 spellings
    docs, doc = [], []
    for t in load_split(train_manifest).tolist():
        if t == golden_pg.BOS:  # every document starts with BOS, the first one too
            doc = []
            docs.append(doc)
        else:
            doc.append(letters[t // 32] + letters[t % 32])
    lines = [" ".join("".join(d[i : i + 4]) for i in range(0, len(d), 4)) for d in docs if d]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(model_out.with_suffix("")),
        model_type="bpe",
        vocab_size=golden_pg.VOCAB,
        byte_fallback=True,
        pad_id=0,
        bos_id=golden_pg.BOS,
        eos_id=2,
        unk_id=3,
        num_threads=1,
        max_sentence_length=1 << 16,  # whole documents; the default 4192 drops the long ones
        minloglevel=2,
    )


def environment() -> dict[str, str]:
    """What train_gpt_cpu.py gets besides the inherited environment (minus any RANK etc.)."""
    return {
        **golden_pg.RECIPE,
        "DATA_PATH": rel(DATA),
        "TOKENIZER_PATH": rel(TOKENIZER),
        "RUN_ID": "golden_pg",
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }


def run_reference(env: dict[str, str]) -> tuple[str, list[str]]:
    """Run the patched copy once, in RUN; returns its stdout and the command as recorded."""
    full = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    full.update(env)
    full["DATA_PATH"], full["TOKENIZER_PATH"] = str(DATA), str(TOKENIZER)  # absolute for the run
    python = Path(sys.executable)
    proc = subprocess.run(
        [str(python), str(SCRIPT)], cwd=RUN, env=full, capture_output=True, text=True
    )
    (RUN / "stdout.txt").write_text(proc.stdout)
    (RUN / "stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"train_gpt_cpu.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    shown = rel(python) if python.is_relative_to(REPO) else str(python)
    return proc.stdout, [shown, rel(SCRIPT)]


def parse(stdout: str) -> dict:
    """The golden_pg lines of the run's stdout, checked against the recipe's step counts."""
    steps, every = int(golden_pg.RECIPE["ITERATIONS"]), int(golden_pg.RECIPE["VAL_LOSS_EVERY"])
    train = re.findall(r"^golden_pg step:(\d+) train_loss:(\S+)$", stdout, re.M)
    val = re.findall(r"^golden_pg step:(\d+) val_loss:(\S+) val_bpb:(\S+)$", stdout, re.M)
    rt = re.findall(r"^golden_pg roundtrip val_loss:(\S+) val_bpb:(\S+)$", stdout, re.M)
    exact = re.findall(
        r"^final_int8_zlib_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)", stdout, re.M
    )
    if [int(s) for s, _ in train] != list(range(1, steps + 1)):
        sys.exit(f"expected a train_loss line for each of steps 1..{steps}")
    if [int(v[0]) for v in val] != list(range(0, steps + 1, every)):
        sys.exit(f"expected val lines at steps 0, {every}, ..., {steps}")
    if len(rt) != 1 or len(exact) != 1:
        sys.exit("expected one roundtrip line and one final_int8_zlib_roundtrip_exact line")
    rt_loss, rt_bpb = map(float, rt[0])
    if any(abs(a - float(b)) > 5.1e-9 for a, b in zip((rt_loss, rt_bpb), exact[0], strict=True)):
        sys.exit(f"roundtrip {rt[0]} disagrees with final_int8_zlib_roundtrip_exact {exact[0]}")
    vals = [{"step": int(s), "val_loss": float(v), "val_bpb": float(b)} for s, v, b in val]
    return {
        "train_loss": [float(x) for _, x in train],
        "val": vals,
        "final_val_loss": vals[-1]["val_loss"],
        "roundtrip_val_loss": rt_loss,
        "roundtrip_val_bpb": rt_bpb,
    }


def provenance(commit, command, env, data, runtime_s) -> dict:
    """The committed fixture's provenance fields, for this run."""

    return {
        "command": " ".join(command),
        "cwd": RUN.relative_to(REPO).as_posix(),
        "env": env,
        "parameter_golf_commit": commit,
        "train_gpt_sha256": sha256(PARAMETER_GOLF / "train_gpt.py"),
        "train_gpt_cpu_sha256": sha256(SCRIPT),
        "patches": [what for what, *_ in PATCHES],
        "procedure": Path(__file__).resolve().relative_to(REPO).as_posix(),
        "data_sha256": data["sha256"],
        "data_seed": golden_pg.SEED,
        **machine(runtime_s),
    }


def compare(new: dict, golden: dict) -> None:
    """Print the largest differences between this run and the committed fixture."""

    def worst(pairs):
        diffs = [(abs(a - b), k) for k, a, b in pairs]
        return max(diffs) if diffs else (math.nan, None)

    train = worst(
        (s, a, b)
        for s, (a, b) in enumerate(zip(new["train_loss"], golden["train_loss"], strict=True), 1)
    )
    val = worst(
        (a["step"], a["val_loss"], b["val_loss"])
        for a, b in zip(new["val"], golden["val"], strict=True)
    )
    rt = abs(new["roundtrip_val_loss"] - golden["roundtrip_val_loss"])
    print(f"vs the committed fixture, made on {golden['provenance']['cpu']}")
    print(f"  (this run: {new['provenance']['cpu']})")
    print(f"  train_loss: largest difference {train[0]:.3e} (step {train[1]})")
    print(f"  val_loss:   largest difference {val[0]:.3e} (step {val[1]})")
    print(f"  final val_loss {abs(new['final_val_loss'] - golden['final_val_loss']):.3e},"
          f" roundtrip val_loss {rt:.3e}")  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {rel(DEFAULT_OUT)}")
    p.add_argument("--write-fixture", action="store_true", help=f"write {rel(golden_pg.FIXTURE)}")
    args = p.parse_args(argv)
    out = golden_pg.FIXTURE if args.write_fixture else args.out.resolve()

    golden = json.loads(golden_pg.FIXTURE.read_text())
    commit = check_reference(golden)
    data = golden_pg.write_data(DATA)
    train_tokenizer(data["train"], TOKENIZER)
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    SCRIPT.write_text(patch((PARAMETER_GOLF / "train_gpt.py").read_text(encoding="utf-8"), PATCHES))

    env = environment()
    start = time.perf_counter()
    stdout, command = run_reference(env)
    runtime_s = time.perf_counter() - start

    result = parse(stdout)
    result["provenance"] = provenance(commit, command, env, data, runtime_s)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({runtime_s:.1f} s of train_gpt_cpu.py)")
    compare(result, golden)


if __name__ == "__main__":
    main()
