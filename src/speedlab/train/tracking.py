"""A live view of each run in an experiment tracker: W&B, TensorBoard or trackio (tracking.*).

People who train these models watch them in W&B (nanochat's `--run`, parameter-golf PRs that
paste a W&B group) or TensorBoard. A run sends the tracker what it writes to metrics.jsonl, step
by step, plus its resolved config and provenance at the start and its summary at the end. The
study is the group (tracking.group overrides it), `<condition>/seed<seed>` the run's name.

    tracker = start(settings, meta, seed, config, run_id=None, resume_step=None)
    tracker.log_row(row)        # one metrics.jsonl row: every number but `step`, at its step
    tracker.log_file(path)      # every row of a metrics.jsonl (external trainers, at the end)
    tracker.log_summary(values) # final numbers (summary.json, roundtrip.json)
    tracker.finish(exit_code)   # idempotent; a preempted run finishes with its exit status
    with tracker: ...           # finish() at the end: exit code 1 if the block raised
    tracker.run_id              # kept in the checkpoint: the resumed run continues this one

Resuming: the trainer passes the checkpoint's run id and step. W&B reopens the same id
(`resume="allow"`), TensorBoard the same folder with a purge at step+1 (steps a killed job
logged past its checkpoint are dropped by every reader), trackio the same name. Rows at or
before the checkpoint's step (the trainer replays them into metrics.jsonl) are not sent again.

Where things go (under settings["dir"], results/tracking by default):
- wandb: <dir>/wandb/offline-run-*/ unless WANDB_MODE says otherwise; `wandb sync` uploads.
- tensorboard: <dir>/<project>/<group>/<condition>/seed<seed>/ (`tensorboard --logdir <dir>`).
- trackio: its SQLite store in <dir>/trackio (TRACKIO_DIR, if unset) (`trackio show`).

The trackers are optional dependencies, imported by name when a run asks for one: speedlab
itself never needs them, and a backend whose package is missing is an error naming
tracking.backend and the extra to install. Standard library otherwise (the external-trainer
runner imports this module and never imports torch).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import secrets
import socket
import sys
from pathlib import Path

from speedlab.train.provenance import git_state

BACKENDS = ("none", "wandb", "tensorboard", "trackio")
DEFAULT_DIR = "results/tracking"
KEYS = {"backend", "project", "group", "dir"}


def check(settings: dict | None) -> dict | None:
    """The trainers' --tracking settings ({backend, project, group, dir}), defaults filled;
    None when tracking is off. Errors name the key."""
    if not settings:
        return None
    unknown = sorted(set(settings) - KEYS)
    if unknown:
        raise ValueError(f"tracking: unknown key(s) {unknown} (keys: {', '.join(sorted(KEYS))})")
    backend = settings.get("backend", "none")
    if backend not in BACKENDS:
        raise ValueError(f"tracking.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "none":
        return None
    return {
        "backend": backend,
        "project": settings.get("project") or "speedlab",
        "group": settings.get("group"),
        "dir": settings.get("dir") or DEFAULT_DIR,
    }


def parse(text: str | None) -> dict | None:
    """--tracking JSON (or '' / None: off), checked."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--tracking: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--tracking: expected a JSON object, got {text!r}")
    return check(value)


def optional(module: str, backend: str):
    """Import a tracker's package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(
            f"tracking.backend is {backend!r} but {module} cannot be imported ({e}); "
            f"pip install 'speedlab[{backend}]' (or set tracking.backend: none)"
        ) from None


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numbers(values: dict) -> dict[str, float]:
    """The numeric entries (NaN kept: a diverged loss is worth seeing), nested dicts flattened
    with '/'."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in numbers(value).items()})
        elif is_number(value):
            out[key] = value
    return out


def provenance(meta: dict, seed: int, config: dict) -> dict:
    """What the tracker shows of a run before it has any numbers."""
    from speedlab.files import config_hash

    return {
        **meta,
        "seed": seed,
        "config_hash": config_hash(config),
        **git_state(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


class Tracker:
    """No tracker (tracking.backend: none) and the interface the backends fill in (log,
    summary, table, close). A tracker that fails during a run (its service died, a full disk)
    warns once and is left out: the training run goes on; strict (track_study) raises."""

    backend = "none"

    def __init__(self, resume_step: int | None = None):
        self.run_id: str | None = None
        self.after = -1 if resume_step is None else resume_step  # steps sent: not again
        self.finished = False
        self.strict = False
        self.failed: str | None = None

    def guarded(self, send, *args) -> None:
        if self.failed:
            return
        try:
            send(*args)
        except Exception as e:
            if self.strict:
                raise
            self.failed = f"{type(e).__name__}: {e}"
            print(f"warning: tracking.backend {self.backend}: {self.failed}; the run goes on "
                  "without its tracker", file=sys.stderr, flush=True)  # fmt: skip

    def log_row(self, row: dict) -> None:
        """One metrics.jsonl row, unless its step was sent before the checkpoint resumed."""
        if row.get("step", 0) > self.after:
            values = {k: v for k, v in numbers(row).items() if k != "step"}
            if values:
                self.guarded(self.log, int(row["step"]), values)

    def log_file(self, path: Path) -> None:
        """Every row of a metrics.jsonl (the external trainer's, written when its script ends)."""
        for line in Path(path).read_text().splitlines():
            self.log_row(json.loads(line))

    def log_summary(self, values: dict) -> None:
        """Final numbers (summary.json, roundtrip.json)."""
        self.guarded(self.summary, values)

    def log_table(self, name: str, columns: list[str], rows: list[list]) -> None:
        self.guarded(self.table, name, columns, rows)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, error, *_) -> None:
        """`with tracker:` finishes it, with exit code 1 if the block raised."""
        self.finish(exit_code=1 if error else 0)

    def finish(self, exit_code: int = 0) -> None:
        if not self.finished:
            self.finished = True
            self.guarded(self.close, exit_code)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def table(self, name: str, columns: list[str], rows: list[list]) -> None:
        pass

    def close(self, exit_code: int) -> None:
        pass


OFF = Tracker()


def starter(settings, meta: dict, seed: int | None, config: dict):
    """start() with the run's settings bound: (run_id=None, resume_step=None) -> Tracker."""

    def start_run(run_id: str | None = None, resume_step: int | None = None) -> Tracker:
        return start(settings, meta, seed, config, run_id, resume_step)

    return start_run


def start(settings, meta, seed, config, run_id=None, resume_step=None, name=None) -> Tracker:
    """The run's tracker (OFF without tracking): a new tracker run, or the run `run_id` of a
    checkpoint continued after `resume_step`. meta: {study, condition}; name: the tracker run's
    name, <condition>/seed<seed> unless given."""
    settings = check(settings)
    if settings is None:
        return OFF
    backend = BACKENDS_BY_NAME[settings["backend"]]
    info = {
        "project": settings["project"],
        "group": settings["group"] or meta["study"],
        "name": name or f"{meta['condition']}/seed{seed}",
        "dir": Path(settings["dir"]),
        "config": {"config": config, "provenance": provenance(meta, seed, config)},
    }
    return backend(info, run_id, resume_step)


class WandbTracker(Tracker):
    """A W&B run, offline unless WANDB_MODE says otherwise (`wandb sync` uploads it later)."""

    backend = "wandb"

    def __init__(self, info: dict, run_id: str | None, resume_step: int | None):
        super().__init__(resume_step)
        wandb = optional("wandb", "wandb")
        info["dir"].mkdir(parents=True, exist_ok=True)
        mode = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
        self.run = wandb.init(
            project=info["project"], group=info["group"], name=info["name"],
            id=run_id or secrets.token_hex(4), resume="allow", dir=str(info["dir"]),
            config=info["config"], job_type="train", **mode,
        )  # fmt: skip
        self.run_id = self.run.id
        self.dir = self.run.dir  # <dir>/wandb/offline-run-<time>-<id>/files

    def log(self, step, metrics):
        self.run.log(metrics, step=step)

    def summary(self, values):
        self.run.summary.update(numbers(values))

    def table(self, name, columns, rows):
        wandb = optional("wandb", "wandb")
        self.run.log({name: wandb.Table(columns=columns, data=rows)})

    def close(self, exit_code):
        self.run.finish(exit_code=exit_code)


class TensorBoardTracker(Tracker):
    """Event files in <dir>/<project>/<group>/<condition>/seed<seed>, written with
    tensorboard's own event writer (no TensorFlow, no torch); the config and provenance as
    text. A fresh run replaces the folder's old event files; a resumed one purges the steps
    after its checkpoint, so no step appears twice."""

    backend = "tensorboard"

    def __init__(self, info: dict, run_id: str | None, resume_step: int | None):
        super().__init__(resume_step)
        writer = optional("tensorboard.summary.writer.event_file_writer", "tensorboard")
        self.pb = optional("tensorboard.compat.proto.event_pb2", "tensorboard")
        self.summary_pb = optional("tensorboard.compat.proto.summary_pb2", "tensorboard")
        self.text_pb = optional("tensorboard.plugins.text.summary_v2", "tensorboard")
        self.logdir = info["dir"] / info["project"] / info["group"] / info["name"]
        self.run_id = str(self.logdir)
        if resume_step is None:
            for old in self.logdir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = writer.EventFileWriter(str(self.logdir), flush_secs=10)
        if resume_step is not None:  # readers drop every event at or after the purge step
            start = self.pb.SessionLog(status=self.pb.SessionLog.START)
            self.writer.add_event(self.pb.Event(step=resume_step + 1, session_log=start))
        self.text("config", info["config"], max(resume_step or 0, 0))

    def event(self, step: int, summary) -> None:
        import time

        self.writer.add_event(self.pb.Event(wall_time=time.time(), step=step, summary=summary))

    def text(self, tag: str, value: dict, step: int) -> None:
        body = json.dumps(value, indent=2, sort_keys=True, default=str)
        self.event(step, self.text_pb.text_pb(tag, f"```\n{body}\n```"))

    def log(self, step, metrics):
        # simple_value scalars: the form every reader purges (the legacy EventAccumulator
        # purges no tensors), and the one torch's SummaryWriter writes
        values = [self.summary_pb.Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]
        self.event(step, self.summary_pb.Summary(value=values))
        self.writer.flush()

    def summary(self, values):
        self.text("summary", values, max(self.after, 0))
        self.writer.flush()

    def table(self, name, columns, rows):
        """A Markdown table, which TensorBoard's text tab renders."""
        lines = [columns, ["---"] * len(columns), *rows]
        table = "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)
        self.event(0, self.text_pb.text_pb(name, table))
        self.writer.flush()

    def close(self, exit_code):
        self.writer.close()


class TrackioTracker(Tracker):
    """A trackio run (local SQLite store, `trackio show`); trackio names runs rather than
    numbering them, so the run id is the name."""

    backend = "trackio"

    def __init__(self, info: dict, run_id: str | None, resume_step: int | None):
        super().__init__(resume_step)
        os.environ.setdefault("TRACKIO_DIR", str((info["dir"] / "trackio").resolve()))
        trackio = optional("trackio", "trackio")
        self.run = trackio.init(
            project=info["project"], name=run_id or info["name"], group=info["group"],
            config=info["config"], resume="allow" if run_id else "never", embed=False,
            auto_log_cpu=False, auto_log_gpu=False,
        )  # fmt: skip
        self.run_id = self.run.name
        self.last_step = max(resume_step or 0, 0)

    def log(self, step, metrics):
        self.last_step = step
        self.run.log({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)

    def summary(self, values):
        """trackio has no run summary: the final numbers as final/<key> at the last step."""
        final = {f"final/{k}": v for k, v in numbers(values).items() if math.isfinite(v)}
        self.run.log(final, step=self.last_step)

    def table(self, name, columns, rows):
        trackio, pd = optional("trackio", "trackio"), optional("pandas", "trackio")
        self.run.log({name: trackio.Table(dataframe=pd.DataFrame(rows, columns=columns))})

    def close(self, exit_code):
        self.run.finish()


BACKENDS_BY_NAME = {
    "wandb": WandbTracker,
    "tensorboard": TensorBoardTracker,
    "trackio": TrackioTracker,
}
