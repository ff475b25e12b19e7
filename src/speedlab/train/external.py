"""The user's own training script as a speedlab run (trainer.kind: command).

A condition whose trainer is `kind: command` is trained by the script people already have: their
fork of parameter-golf's train_gpt.py, a modded-nanogpt record, nanochat's base_train. speedlab
keeps what it is for (seeds, SLURM resources and retries, plans, statistics, reports) and leaves
the training to the script:

    python -m speedlab.train.external run --config JSON --seed S --out-dir DIR --work-dir DIR ...
    python -m speedlab.train.external fetch --git URL --commit C --out DIR

`run` fills the templates of trainer.command, trainer.args and trainer.env with the run's values
(TEMPLATE_VARS below, and every `params` key of the condition), passes the seed as trainer.seed
says (an environment variable, or a flag), and runs the command in the run's work folder, where
each top-level entry of the source folder is linked: a script that writes `logs/` or
`final_model.pt` next to itself writes them into its own run's folder, so runs never collide.
Its output goes to stdout_attempt<N>.log there and to the job's log. It then reads trainer.log
(stdout, or a file the script writes; of a file holding several runs, the last) in
trainer.log_format with speedlab.logformats and writes the files a speedlab run writes:
metrics.jsonl, summary.json, roundtrip.json (the final quantized score the log prints) and
provenance.json (the source's commit and the sha256 of every file it runs). A
non-zero exit, or a log without the study's metric, fails the job with the log's last 20 lines.

Preemption: SIGTERM and SIGUSR1 (SLURM's warning before the time limit) are passed to the
script's process group; the job then fails and Snakemake's retry starts the script again. The
script resumes only if it can itself: trainer.resume_env / trainer.resume_args are added on a
restart (the work folder keeps a count of attempts), e.g. `{RESUME: '1'}`. A finished run, or
a run of an edited condition, starts afresh in an emptied work folder.

Tracking (--tracking, speedlab.train.tracking): the tracker run opens with the attempt (config
and provenance), its id kept in the attempt marker so that a retry continues it. While the
script runs, its log is parsed again every LIVE_EVERY_S and the steps it has finished go to the
tracker; the rest of metrics.jsonl and the final numbers when it ends.

`fetch` clones a git source once at its pinned commit (file://, ssh and https URLs) into
results/trainers/.

Standard library only (it runs in the training environment, and never imports torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

from speedlab.files import atomic_path, config_hash, write_json
from speedlab.train import tracking

# What the templates may name, besides the condition's `params` keys.
TEMPLATE_VARS = {
    "python": "the interpreter running the job",
    "gpus": "train.gpus",
    "nproc": "processes: train.gpus, at least 1",
    "seed": "the run's seed",
    "steps": "train.steps",
    "study": "the study's name",
    "condition": "the condition's name",
    "run_id": "<study>-<condition>-seed<seed>",
    "work_dir": "the run's work folder (the command's working directory)",
    "out_dir": "the run's output folder",
    "source": "the source folder (the cloned commit or the local path)",
    "data_dir": "the shard folder (fineweb_train_*.bin, fineweb_val_*.bin)",
    "train_files": "<data_dir>/fineweb_train_*.bin",
    "val_files": "<data_dir>/fineweb_val_*.bin",
    "tokenizer": "the SentencePiece model of the shards",
    "vocab_size": "the shards' vocabulary",
    "attempt": "1, then 2, ... on each restart",
}
# Variables that need the shards: a command naming one makes the job wait for them.
DATA_VARS = ("data_dir", "train_files", "val_files", "tokenizer", "vocab_size")
TAIL_LINES = 20
LIVE_EVERY_S = 10.0  # how often a running script's log is read again for the tracker
ATTEMPTS = ".speedlab_attempts"


def template_fields(cfg: dict) -> dict[str, str]:
    """Every template of the trainer, by its config key (trainer.command, trainer.env.X, ...)."""
    t = cfg["trainer"]
    fields = {"command": t["command"], "log": t["log"]}
    fields.update({f"args[{k}]": a for k, a in enumerate(t["args"])})
    fields.update({f"env.{k}": str(v) for k, v in t["env"].items()})
    fields.update({f"resume_args[{k}]": a for k, a in enumerate(t["resume_args"])})
    fields.update({f"resume_env.{k}": str(v) for k, v in t["resume_env"].items()})
    return fields


def names_in(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def check_templates(cfg: dict) -> None:
    """Every {name} in the trainer's templates is a template variable or a params key."""
    known = set(TEMPLATE_VARS) | set(cfg["params"])
    for key, template in template_fields(cfg).items():
        try:
            unknown = [n for n in names_in(template) if n not in known]
        except ValueError as e:
            raise ValueError(f"trainer.{key}: {template!r}: {e}") from None
        if unknown:
            raise ValueError(
                f"trainer.{key}: {{{unknown[0]}}} is neither a template variable "
                f"({', '.join(TEMPLATE_VARS)}) nor a key of the condition's params "
                f"({', '.join(cfg['params']) or 'none'})"
            )


def needs_data(cfg: dict) -> bool:
    """Whether the command reads speedlab's shards (a template names one of DATA_VARS)."""
    return any(n in DATA_VARS for t in template_fields(cfg).values() for n in names_in(t))


def variables(cfg: dict, seed: int, meta: dict, paths: dict, attempt: int) -> dict:
    data = paths.get("data_dir") or ""
    gpus = cfg["train"]["gpus"]
    return {
        **{k: ("" if v is None else v) for k, v in cfg["params"].items()},
        "python": sys.executable, "gpus": gpus, "nproc": max(gpus, 1), "seed": seed,
        "steps": cfg["train"]["steps"], "study": meta["study"], "condition": meta["condition"],
        "run_id": f"{meta['study']}-{meta['condition']}-seed{seed}",
        "work_dir": paths["work_dir"], "out_dir": paths["out_dir"],
        "source": paths.get("source") or "", "data_dir": data,
        "train_files": f"{data}/fineweb_train_*.bin", "val_files": f"{data}/fineweb_val_*.bin",
        "tokenizer": paths.get("tokenizer") or "", "vocab_size": paths.get("vocab_size") or "",
        "attempt": attempt,
    }  # fmt: skip


def command_line(cfg: dict, values: dict, restart: bool) -> list[str]:
    t = cfg["trainer"]
    argv = shlex.split(t["command"].format_map(values))
    argv += [a.format_map(values) for a in t["args"]]
    if t["seed"].startswith("-"):
        flag = t["seed"]
        argv += [f"{flag}{values['seed']}"] if flag.endswith("=") else [flag, str(values["seed"])]
    if restart:
        argv += [a.format_map(values) for a in t["resume_args"]]
    return argv


def command_env(cfg: dict, values: dict, restart: bool) -> dict[str, str]:
    """The variables the trainer sets (the job's environment is inherited under them)."""
    t = cfg["trainer"]
    env = {k: str(v).format_map(values) for k, v in t["env"].items()}
    if not t["seed"].startswith("-"):
        env[t["seed"]] = str(values["seed"])
    if restart:
        env.update({k: str(v).format_map(values) for k, v in t["resume_env"].items()})
    return env


def link_source(source: Path | None, work_dir: Path) -> None:
    """Link each top-level entry of the source folder into the work folder (once)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if source is None:
        return
    for entry in sorted(source.iterdir()):
        link = work_dir / entry.name
        if entry.name != ".git" and not (link.exists() or link.is_symlink()):
            link.symlink_to(entry.resolve())


def next_attempt(work_dir: Path, identity: str) -> int:
    """1 on a fresh start, then one more on each restart of an unfinished run of the same
    config (kept in the work folder). A finished run, or one of another config (an edited
    condition), starts afresh in an emptied work folder: a resume hook must never pick up
    another run's files."""
    marker = work_dir / ATTEMPTS
    state = json.loads(marker.read_text()) if marker.exists() else {}
    if state.get("config_hash") == identity and not state.get("finished"):
        attempt = state["attempt"] + 1
    else:
        if work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        attempt, state = 1, {}
    marker.write_text(json.dumps({**state, "config_hash": identity, "attempt": attempt}))
    return attempt


def start_tracker(track, meta: dict, seed: int, cfg: dict, work_dir: Path):
    """The run's tracker run (speedlab.train.tracking): the one an earlier attempt started,
    continued, its id kept in the work folder's attempt marker; the steps go at the end."""
    marker = work_dir / ATTEMPTS
    state = json.loads(marker.read_text())
    tracker = tracking.start(track, meta, seed, cfg, run_id=state.get("tracker_id"))
    marker.write_text(json.dumps({**state, "tracker_id": tracker.run_id}))
    return tracker


def mark_finished(work_dir: Path) -> None:
    marker = work_dir / ATTEMPTS
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "finished": True}))


def run_command(argv: list[str], env: dict, cwd: Path, capture: Path) -> int:
    """Run argv in cwd, its stdout and stderr into `capture` and this job's stdout; SIGTERM and
    SIGUSR1 go on to its process group (the script may save and exit)."""
    with open(capture, "wb") as out:
        child = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

        def forward(signum, _frame):
            os.killpg(child.pid, signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            for line in child.stdout:
                out.write(line)
                out.flush()
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            return child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def tail(path: Path, n: int = TAIL_LINES) -> str:
    if not path.exists():
        return f"({path} was not written)"
    lines = path.read_text(errors="replace").splitlines()[-n:]
    return "\n".join(f"    {line}" for line in lines) or "    (empty)"


def fail(what: str, log: Path) -> None:
    raise SystemExit(f"speedlab.train.external: {what}; the last {TAIL_LINES} lines of {log}:\n"
                     f"{tail(log)}")  # fmt: skip


def metric_values(cfg: dict, log) -> dict[str, float]:
    """The study's metrics from the log: trainer.metrics' final lines, else the log's own."""
    values = {m: getattr(log, m) for m in ("train_loss", "val_loss", "val_bpb")}
    values.update(q_val_loss=log.q_val_loss, q_val_bpb=log.q_val_bpb)
    for metric, spec in cfg["trainer"]["metrics"].items():
        line, _, field = spec.partition(".")
        if field not in log.finals.get(line, {}):
            printed = ", ".join(f"{n}.{f}" for n, fs in log.finals.items() for f in fs)
            raise ValueError(
                f"trainer.metrics.{metric}: the log has no final line {spec} "
                f"(final lines it prints: {printed or 'none'})"
            )
        values[metric] = log.finals[line][field]
    return values


def read_run(cfg: dict, log_path: Path, metric: str):
    """(parsed log, metric values) of a finished script; fails the job if the metric is not
    in the log."""
    from speedlab.logformats import parse_runs

    try:
        log = parse_runs(log_path, cfg["trainer"]["log_format"])[-1]  # a restart's, if several
        values = metric_values(cfg, log)
    except (OSError, ValueError) as e:
        fail(f"cannot read the trainer's log: {e}", log_path)
    if values.get(metric) is None or values[metric] != values[metric]:
        fail(f"the log has no value of the study's metric {metric} (no final line)", log_path)
    return log, values


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and value == value


def number(value):
    """The value, or None for what the log does not state (JSON has no NaN)."""
    return value if is_number(value) else None


def curve_records(log, batch_tokens) -> list[dict]:
    """metrics.jsonl: one record per logged step, with every metric logged at it."""
    rows: dict[int, dict] = {}
    for p in log.points:
        tokens = p.step * batch_tokens if batch_tokens else -1
        row = rows.setdefault(p.step, {"step": p.step, "tokens": tokens, "time_s": p.time_s})
        row[p.metric] = p.value
    return [rows[s] for s in sorted(rows)]


def summary(cfg: dict, log, values: dict, meta: dict, seed: int) -> dict:
    batch = log.config.get("train.batch_tokens")
    return {
        **meta, "seed": seed, "source": "command", "config_hash": config_hash(cfg),
        "log_format": log.source, "n_params": number(log.n_params), "steps": log.steps,
        "steps_planned": number(log.steps_planned),
        "tokens": log.steps * batch if batch else None,
        "train_time_s": number(log.train_time_s), "step_avg_ms": number(log.step_avg_ms),
        **{m: number(values[m]) for m in ("train_loss", "val_loss", "val_bpb")},
        "diverged": log.diverged, "peak_memory_mb": number(log.peak_memory_mb),
        "headline": log.headline, "finals": log.finals, "sizes": log.sizes,
    }  # fmt: skip


def roundtrip(log, values: dict) -> dict:
    """The score after the script's own export, and its sizes, as the log prints them."""
    return {
        "q_val_loss": number(values["q_val_loss"]), "q_val_bpb": number(values["q_val_bpb"]),
        "payload_bytes": number(log.payload_bytes),
        "compressed_bytes": number(log.compressed_bytes),
        "artifact_bytes": number(log.artifact_bytes), "scored_by": "the trainer's own log",
    }  # fmt: skip


def file_hashes(source: Path | None, argv: list[str], cwd: Path) -> dict[str, str]:
    """sha256 of every file the command runs: the source's .py/.sh files and any file the
    command line names."""
    files = {}
    if source is not None:
        for path in sorted(source.rglob("*")):
            hidden = any(part.startswith(".") or part == "__pycache__" for part in
                         path.relative_to(source).parts)  # fmt: skip
            if path.suffix in (".py", ".sh") and path.is_file() and not hidden:
                files[str(path.relative_to(source))] = path
    for arg in argv[1:]:
        path = cwd / arg
        if path.is_file() and arg not in files:
            files[arg] = path
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}


def source_commit(source: Path | None) -> str | None:
    if source is None or not (source / ".git").exists():
        return None
    out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                         text=True)  # fmt: skip
    return out.stdout.strip() or None


def provenance(cfg: dict, log, meta: dict, run: dict) -> dict:
    from speedlab.train.provenance import git_state

    return {
        **meta, "seed": run["seed"], "source": "command", "config_hash": config_hash(cfg),
        "config": cfg, "command": run["argv"], "env": run["env"], "attempt": run["attempt"],
        "trainer_source": cfg["trainer"]["source"], "trainer_commit": source_commit(run["src"]),
        "trainer_files_sha256": run["hashes"], "log": str(run["log"]),
        **git_state(), "host": socket.gethostname(),
        "device": log.device or ("cpu" if cfg["train"]["gpus"] == 0 else None),
        "world_size": log.world_size if is_number(log.world_size) else max(
            cfg["train"]["gpus"], 1),
        "torch": log.torch, "cuda": log.cuda, "python": sys.version.split()[0],
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def write_outputs(out_dir: Path, cfg: dict, log, values: dict, meta: dict, run: dict) -> None:
    with atomic_path(out_dir / "metrics.jsonl") as tmp:
        rows = curve_records(log, log.config.get("train.batch_tokens"))
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json(out_dir / "roundtrip.json", roundtrip(log, values), sort_keys=True)
    write_json(out_dir / "provenance.json", provenance(cfg, log, meta, run), sort_keys=True)
    with atomic_path(out_dir / "train.log") as tmp:
        tmp.write_bytes(Path(run["log"]).read_bytes())
    row = summary(cfg, log, values, meta, run["seed"])
    write_json(
        out_dir / "summary.json", {**row, "log_path": str(out_dir / "train.log")}, sort_keys=True
    )


def absolute(paths: dict) -> dict:
    """The paths as the script sees them from its work folder: absolute."""
    keys = ("work_dir", "out_dir", "source", "data_dir", "tokenizer")
    return {k: str(Path(v).resolve()) if k in keys and v else v for k, v in paths.items()}


class LiveSteps:
    """The script's logged steps to the tracker while it runs: every LIVE_EVERY_S the log is
    parsed again and its steps before the last (that one may still be printing) are sent; when
    the script exits (finished or not), all of them. A log not readable yet is tried later."""

    def __init__(self, tracker, cfg: dict, log_file: Path):
        self.tracker, self.cfg, self.log_file = tracker, cfg, log_file
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self):
        if self.tracker is not tracking.OFF:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.tick(final=True)

    def loop(self) -> None:
        while not self.stop.wait(LIVE_EVERY_S):
            self.tick(final=False)

    def tick(self, final: bool) -> None:
        from speedlab.logformats import parse_runs

        if self.tracker is tracking.OFF:
            return
        try:
            log = parse_runs(self.log_file, self.cfg["trainer"]["log_format"])[-1]
        except Exception:  # noqa: BLE001 - half-written or not yet there: the next tick
            return
        rows = curve_records(log, log.config.get("train.batch_tokens"))
        rows = rows if final else rows[:-1]
        for row in rows:
            self.tracker.log_row(row)
        if rows:  # sent: not again (the tracker skips steps up to `after`)
            self.tracker.after = max(self.tracker.after, rows[-1]["step"])


def train(cfg: dict, seed: int, meta: dict, paths: dict, metric: str, track=None) -> dict:
    """Run the script once (or again after a preemption) and write the run's files; `track`:
    the tracking settings (speedlab.train.tracking), None for none."""
    work_dir, out_dir = Path(paths["work_dir"]), Path(paths["out_dir"])
    attempt = next_attempt(work_dir, config_hash({"cfg": cfg, "seed": seed}))
    with start_tracker(track, meta, seed, cfg, work_dir) as tracker:
        values = run_attempt(cfg, seed, meta, paths, metric, attempt, tracker)
        tracker.log_file(out_dir / "metrics.jsonl")
        tracker.log_summary({**values, **json.loads((out_dir / "summary.json").read_text())})
    return values


def run_attempt(cfg: dict, seed: int, meta: dict, paths: dict, metric: str, attempt: int,
                tracker) -> dict:  # fmt: skip
    work_dir, out_dir = Path(paths["work_dir"]), Path(paths["out_dir"])
    src = Path(paths["source"]).resolve() if paths.get("source") else None
    link_source(src, work_dir)
    values = variables(cfg, seed, meta, absolute(paths), attempt)
    argv = command_line(cfg, values, restart=attempt > 1)
    env = command_env(cfg, values, restart=attempt > 1)
    capture = work_dir / f"stdout_attempt{attempt}.log"
    print(f"trainer (attempt {attempt}): {shlex.join(argv)}\n  env: {env}", flush=True)
    log_file = (
        capture
        if cfg["trainer"]["log"] == "stdout"
        else work_dir / cfg["trainer"]["log"].format_map(values)
    )
    with LiveSteps(tracker, cfg, log_file):
        code = run_command(argv, env, work_dir, capture)
    if code != 0:
        fail(f"the trainer exited with status {code}", capture)
    log, metric_row = read_run(cfg, log_file, metric)
    run = {"seed": seed, "argv": argv, "env": env, "attempt": attempt, "src": src,
           "hashes": file_hashes(src, argv, work_dir), "log": log_file}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, cfg, log, metric_row, meta, run)
    mark_finished(work_dir)
    return metric_row


def source_dir_name(source: dict) -> str:
    """results/trainers/<name>: the repository's name and the commit's first 12 digits."""
    name = source["git"].rstrip("/").removesuffix(".git").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return f"{name}-{source['commit'][:12]}"


def git(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"speedlab.train.external fetch: git {' '.join(args)}: "
                         f"{out.stderr.strip()}")  # fmt: skip
    return out.stdout.strip()


def fetch(url: str, commit: str, out: Path) -> str:
    """Clone url at the pinned commit into out (through a temporary folder); returns the
    full commit. A commit the repository lacks is an error naming both."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    git("clone", "--quiet", "--no-checkout", url, str(tmp))
    try:
        full = git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", cwd=tmp)
    except SystemExit:
        raise SystemExit(
            f"speedlab.train.external fetch: {url} has no commit {commit} (trainer.source.commit)"
        ) from None
    git("checkout", "--quiet", "--detach", full, cwd=tmp)
    os.replace(tmp, out)
    return full


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the trainer command of one (condition, seed)")
    r.add_argument("--config", required=True, help="the resolved run config as JSON")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--study", required=True)
    r.add_argument("--condition", required=True)
    r.add_argument("--metric", required=True, help="the study's metric: the log must have it")
    for name in ("out-dir", "work-dir"):
        r.add_argument(f"--{name}", required=True)
    for name in ("source", "data-dir", "tokenizer", "vocab-size"):
        r.add_argument(f"--{name}", default="")
    r.add_argument("--tracking", default="", help="tracking settings as JSON (default: none)")
    f = sub.add_parser("fetch", help="clone a git source at its pinned commit")
    f.add_argument("--git", required=True)
    f.add_argument("--commit", required=True)
    f.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "fetch":
        print(f"{args.git} at {fetch(args.git, args.commit, args.out)} -> {args.out}")
        return
    try:
        track = tracking.parse(args.tracking)
    except ValueError as e:
        r.error(str(e))
    paths = {k: getattr(args, k) for k in ("out_dir", "work_dir", "source", "data_dir",
                                            "tokenizer", "vocab_size")}  # fmt: skip
    meta = {"study": args.study, "condition": args.condition}
    values = train(json.loads(args.config), args.seed, meta, paths, args.metric, track)
    print(f"done: {args.metric} {values[args.metric]:.4f}")


if __name__ == "__main__":
    main()
