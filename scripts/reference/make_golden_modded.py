"""Make the golden fixture of model.kind modded2410: what the 2024-10-14 modded-nanogpt record
prints for a tiny version of its recipe.

tests/test_golden_modded.py checks that speedlab's trainer, with model.kind modded2410,
optim.split modded2410 and train.data_order modded, reproduces the record's train_gpt2.py step
for step. Its numbers come from here: this script runs a CPU copy of the record on the data and
recipe of tests/golden_modded.py and writes every step's train loss, each validation's val_loss
(and its batches' losses), with their provenance, as JSON.

    .venv/bin/python scripts/reference/make_golden_modded.py                 # into reference/
    .venv/bin/python scripts/reference/make_golden_modded.py --write-fixture # the fixture

Steps:

1. reference/modded-nanogpt (git-ignored, never committed here) must be at COMMIT with the
   record's file as that commit has it (its git blob hash is checked).
2. golden_modded.write_data() (golden_pg's shards) writes the data into reference/golden_modded/
   data; the record reads fineweb_train_*.bin and fineweb_val_*.bin there, sorted by name.
3. The record is copied to reference/golden_modded/run/train_gpt2_cpu.py and patched there by
   exact string replacements, each of which must match as often as expected or the script
   stops. The patches (PATCHES below) make it run on the CPU, size it by the recipe and seed it;
   they change none of its arithmetic but two things, both as speedlab's CPU runs: eager
   instead of torch.compile (Newton-Schulz and the model), and no autocast (the CPU forward is
   fp32 with the record's bf16 rotary tables; Newton-Schulz stays bf16 as written). It keeps
   torch.distributed and DDP, with gloo and one process instead of NCCL and 8.
4. The copy runs once, with cwd reference/golden_modded/run and RANK=0, WORLD_SIZE=1.
5. Its stdout is parsed and written as JSON (default --out reference/golden_modded/...; the
   fixture itself only with --write-fixture), and the largest differences from the committed
   fixture, if there is one, are printed. Its bf16 arithmetic depends on the CPU's vector units
   (cpu in the provenance).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import golden_modded  # noqa: E402  (tests/golden_modded.py: the data, the recipe)
from reference_run import machine, patch, rel, sha256  # noqa: E402

MODDED = REPO / "reference" / "modded-nanogpt"
COMMIT = "f411b3d346aa52d3504324ca93c230fd84c6c07f"
WORK = REPO / "reference" / "golden_modded"
DATA = WORK / "data"
RUN = WORK / "run"
SCRIPT = RUN / "train_gpt2_cpu.py"
DEFAULT_OUT = WORK / "train_gpt2_cpu.json"

IMPORTS_END = "from torch.nn.parallel import DistributedDataParallel as DDP\n"
CPU_PRELUDE = """
# golden_modded (CPU copy): no GPU, so these CUDA calls do nothing; one thread and
# deterministic kernels, as speedlab's CPU runs.
for _name in ("synchronize", "max_memory_allocated"):
    setattr(torch.cuda, _name, lambda *args, **kwargs: 0)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
"""
CUDA_SETUP = """assert torch.cuda.is_available()
dist.init_process_group(backend='nccl')
"""
DEVICE = """device = f'cuda:{ddp_local_rank}'
torch.cuda.set_device(device)
"""
NVIDIA_SMI = (
    "        import subprocess\n"
    "        result = subprocess.run(['nvidia-smi'], stdout=subprocess.PIPE,"
    " stderr=subprocess.PIPE, text=True)\n"
    "        f.write(f'{result.stdout}\\n')\n"
)
MODEL = "model = GPT(GPTConfig(vocab_size=num_vocab, n_layer=12, n_head=6, n_embd=768))\n"
AUTOCAST = "ctx = torch.amp.autocast(device_type='cuda', dtype=torch.bfloat16)"
TRAIN_PRINT = "        approx_time = training_time_ms + 1000 * (time.time() - t0)\n"
VAL_START = "        val_loss = 0.0\n"
VAL_BATCH = "                val_loss += loss.detach()\n"
VAL_END = "        val_loss /= val_steps\n"


def hyperparameters() -> str:
    """The Hyperparameters(...) line of the recipe, data paths relative to the run folder."""
    fields = {
        "input_bin": "../data/fineweb_train_*.bin",
        "input_val_bin": "../data/fineweb_val_*.bin",
        **golden_modded.RECIPE,
    }
    return f"args = Hyperparameters(**{fields!r})\n"


def model_line() -> str:
    m = golden_modded.MODEL
    config = f"n_layer={m['n_layer']}, n_head={m['n_head']}, n_embd={m['n_embd']}"
    seed = f"torch.manual_seed({golden_modded.SEED})  # golden_modded: the record seeds nothing\n"
    return seed + f"model = GPT(GPTConfig(vocab_size=num_vocab, {config}))\n"


# (what it does, as the provenance records it; exact text; replacement; expected count)
PATCHES = [
    (
        "torch.cuda.synchronize and max_memory_allocated become no-ops; one torch thread and"
        " deterministic algorithms, as speedlab's CPU runs",
        IMPORTS_END,
        IMPORTS_END + CPU_PRELUDE,
        1,
    ),
    (
        "Newton-Schulz runs eager: no @torch.compile",
        "@torch.compile\ndef zeropower_via_newtonschulz5",
        "def zeropower_via_newtonschulz5",
        1,
    ),
    ("batches stay on the CPU", "        return x.cuda(), y.cuda()\n", "        return x, y\n", 1),
    (
        "the tiny recipe: Hyperparameters(...) of tests/golden_modded.py RECIPE",
        "args = Hyperparameters()\n",
        hyperparameters(),
        1,
    ),
    (
        "one gloo process instead of NCCL (RANK=0, WORLD_SIZE=1 from the environment)",
        CUDA_SETUP,
        "dist.init_process_group(backend='gloo')\n",
        1,
    ),
    ("device cpu", DEVICE, "device = 'cpu'\n", 1),
    (
        "vocabulary padded to tests/golden_modded.py PADDED_VOCAB instead of 50304",
        "num_vocab = 50304\n",
        f"num_vocab = {golden_modded.PADDED_VOCAB}\n",
        1,
    ),
    (
        "the tiny model: GPTConfig of tests/golden_modded.py MODEL, after"
        " torch.manual_seed(golden_modded.SEED)",
        MODEL,
        model_line(),
        1,
    ),
    ("the model stays on the CPU", "model = model.cuda()\n", "", 1),
    ("the model runs eager: no torch.compile", "model = torch.compile(model)\n", "", 1),
    (
        "DDP without CUDA device_ids",
        "model = DDP(model, device_ids=[ddp_local_rank])",
        "model = DDP(model)",
        1,
    ),
    (
        "CUDA autocast disabled (train and val): the CPU forward is fp32 as written, with the"
        " bf16 rotary tables; Newton-Schulz stays bf16",
        AUTOCAST,
        AUTOCAST[:-1] + ", enabled=False)",
        1,
    ),
    ("no nvidia-smi call (its output only went to the log file)", NVIDIA_SMI, "", 1),
    (
        "extra logging only: every step's train_loss at full precision",
        TRAIN_PRINT,
        TRAIN_PRINT
        + '        print(f"golden_modded step:{step+1} train_loss:{train_loss.item()!r}")\n',
        1,
    ),
    (
        "extra logging only: every validation's val_loss and its batches' losses at full precision",
        VAL_START,
        VAL_START + "        golden_val_batches = []\n",
        1,
    ),
    (
        "extra logging only: each validation batch's loss kept",
        VAL_BATCH,
        VAL_BATCH + "                golden_val_batches.append(loss.item())\n",
        1,
    ),
    (
        "extra logging only: the validation's line, after its mean",
        VAL_END,
        VAL_END + '        print(f"golden_modded step:{step} val_loss:{val_loss.item()!r}'
        ' batches:{json.dumps(golden_val_batches)}")\n',
        1,
    ),
    (
        "extra logging only: json imported to print the batch losses",
        "import uuid\n",
        "import uuid\nimport json\n",
        1,
    ),
]


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(MODDED), *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"git {' '.join(args)} in {MODDED}: {done.stderr.strip()}")
    return done.stdout.strip()


def check_reference() -> Path:
    """The modded-nanogpt checkout is at COMMIT and the record's file is that commit's."""
    if git("rev-parse", "HEAD") != COMMIT:
        sys.exit(f"{MODDED} is not at {COMMIT}")
    record = MODDED / golden_modded.RECORD
    if git("hash-object", str(record)) != git("rev-parse", f"{COMMIT}:{golden_modded.RECORD}"):
        sys.exit(f"{record} differs from {golden_modded.RECORD} at {COMMIT}")
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict[str, str]:
    """What train_gpt2_cpu.py gets besides the inherited environment (the port aside)."""
    one = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    return {**one, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def run_reference(env: dict[str, str]) -> tuple[str, list[str]]:
    """Run the patched copy once, in RUN (it reads sys.argv[0], so the script name is
    relative); returns its stdout and the command as recorded."""
    full = {**os.environ, **env, "MASTER_PORT": str(free_port())}
    python = Path(sys.executable)
    proc = subprocess.run(
        [str(python), SCRIPT.name], cwd=RUN, env=full, capture_output=True, text=True
    )
    (RUN / "stdout.txt").write_text(proc.stdout)
    (RUN / "stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"train_gpt2_cpu.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    shown = rel(python) if python.is_relative_to(REPO) else str(python)
    return proc.stdout, [shown, SCRIPT.name]


def parse(stdout: str) -> dict:
    """The golden_modded lines of the run's stdout, checked against the recipe's step counts
    and against the record's own 4-digit lines."""
    steps, every = golden_modded.RECIPE["num_iterations"], golden_modded.RECIPE["val_loss_every"]
    train = re.findall(r"^golden_modded step:(\d+) train_loss:(\S+)$", stdout, re.M)
    val = re.findall(r"^golden_modded step:(\d+) val_loss:(\S+) batches:(.+)$", stdout, re.M)
    own = re.findall(r"^step:(\d+)/\d+ (train|val)_loss:(\S+) ", stdout, re.M)
    if [int(s) for s, *_ in train] != list(range(1, steps + 1)):
        sys.exit(f"expected a train_loss line for each of steps 1..{steps}")
    if [int(v[0]) for v in val] != list(range(0, steps + 1, every)):
        sys.exit(f"expected val lines at steps 0, {every}, ..., {steps}")
    ours = [(int(s), "train", float(t)) for s, t in train]
    ours += [(int(s), "val", float(v)) for s, v, _ in val]
    printed = {(int(s), kind): float(x) for s, kind, x in own}
    if any(abs(printed[(s, kind)] - x) > 5.1e-5 for s, kind, x in ours):
        sys.exit("the full-precision lines disagree with the record's own 4-digit ones")
    return {
        "train_loss": [float(t) for _, t in train],
        "val": [
            {"step": int(s), "val_loss": float(v), "batch_losses": json.loads(b)} for s, v, b in val
        ],
    }


def provenance(record: Path, command, env, data, runtime_s) -> dict:
    """The fixture's provenance fields, for this run."""

    return {
        "command": " ".join(command),
        "cwd": RUN.relative_to(REPO).as_posix(),
        "env": env,
        "modded_nanogpt_repo": "KellerJordan/modded-nanogpt",
        "modded_nanogpt_commit": COMMIT,
        "record": golden_modded.RECORD,
        "record_sha256": sha256(record),
        "record_cpu_sha256": sha256(SCRIPT),
        "patches": [what for what, *_ in PATCHES],
        "hyperparameters": golden_modded.RECIPE,
        "gpt_config": golden_modded.MODEL,
        "torch_seed": golden_modded.SEED,
        "procedure": Path(__file__).resolve().relative_to(REPO).as_posix(),
        "data": "tests/golden_pg.py write_data (golden_modded.write_data)",
        "data_sha256": data["sha256"],
        **machine(runtime_s),
    }


def compare(new: dict, golden: dict) -> None:
    """Print the largest differences between this run and the committed fixture."""
    train = max(abs(a - b) for a, b in zip(new["train_loss"], golden["train_loss"], strict=True))
    pairs = zip(new["val"], golden["val"], strict=True)
    val = max(abs(a["val_loss"] - b["val_loss"]) for a, b in pairs)
    print(f"vs the committed fixture, made on {golden['provenance']['cpu']}")
    print(f"  (this run: {new['provenance']['cpu']})")
    print(f"  train_loss: largest difference {train:.3e}; val_loss: {val:.3e}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {rel(DEFAULT_OUT)}")
    p.add_argument(
        "--write-fixture", action="store_true", help=f"write {rel(golden_modded.FIXTURE)}"
    )
    args = p.parse_args(argv)
    out = golden_modded.FIXTURE if args.write_fixture else args.out.resolve()

    record = check_reference()
    data = golden_modded.write_data(DATA)
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    SCRIPT.write_text(patch(record.read_text(encoding="utf-8"), PATCHES))

    env = environment()
    start = time.perf_counter()
    stdout, command = run_reference(env)
    runtime_s = time.perf_counter() - start

    result = parse(stdout)
    result["provenance"] = provenance(record, command, env, data, runtime_s)
    previous = (
        json.loads(golden_modded.FIXTURE.read_text()) if golden_modded.FIXTURE.exists() else None
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({runtime_s:.1f} s of train_gpt2_cpu.py)")
    if previous is not None:
        compare(result, previous)


if __name__ == "__main__":
    main()
