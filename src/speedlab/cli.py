"""`speedlab`: the commands a user runs by hand (the workflow's rules call the modules directly).
`speedlab COMMAND --help` tells a command's options.

    speedlab plan [--configfile FILE...] [--config KEY=VALUE...]   runs, GPU memory, GPU-hours, $
    speedlab schema [PREFIX]                                       the documented config keys
    speedlab shards info|check [--vocab V] FILE...                 inspect or verify token shards
    speedlab import-logs [--summary] FILE|DIR...                   what other tools' logs yield
    speedlab export RUN_DIR OUT                                    weights others can load
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

LOG_SUFFIXES = (".log", ".txt", ".out", ".stdout")  # what a directory's log files are named
NOT_LOGS = ("readme", "requirements")  # .txt files that are not logs (skipped by name)
FINAL = ("train_loss", "val_loss", "val_bpb")
SCORES = ("val_loss", "val_bpb")


def _plan(argv: list[str]) -> int:
    from speedlab.plan import main

    main(argv, prog="speedlab plan")
    return 0


def _export(argv: list[str]) -> int:
    from speedlab.train.export import main

    main(argv, prog="speedlab export")
    return 0


def _shards(argv: list[str]) -> int:
    from speedlab.data.shards import main

    main(argv, prog="speedlab shards")
    return 0


# Commands whose module parses its own arguments: `speedlab <name> --help` shows them.
DELEGATED = {
    "plan": (
        _plan,
        "runs done and pending per study, each GPU run's micro-batch and memory estimate, "
        "GPU-hours and cost still needed",
    ),
    "shards": (_shards, "inspect (info) or verify (check) token shards"),
    "export": (_export, "a finished run's weights as model.safetensors + config.json + tokenizer"),
}


def _schema(args: argparse.Namespace) -> int:
    from speedlab.config import schema_lines

    lines = schema_lines(args.prefix)
    if not lines:
        sys.exit(f"speedlab schema: no documented key starts with {args.prefix!r}")
    print("\n".join(lines))
    return 0


def _log_files(paths: list[Path]) -> tuple[list[Path], Counter, list[Path]]:
    """The files named, and the log files under the directories named (sorted); what else
    the directories hold, by suffix; the log files git tracks there that are absent."""
    files, skipped, absent = [], Counter(), []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for p in sorted(p for p in path.rglob("*") if p.is_file()):
            if _is_log_name(p):
                files.append(p)
            else:
                skipped[_kind(p)] += 1
        absent += [p for p in _tracked(path) if _is_log_name(p) and not p.exists()]
    return files, skipped, absent


def _is_log_name(path: Path) -> bool:
    return path.suffix in LOG_SUFFIXES and not path.name.lower().startswith(NOT_LOGS)


def _kind(path: Path) -> str:
    return path.name if path.name.lower().startswith(NOT_LOGS) else path.suffix or path.name


def _tracked(directory: Path) -> list[Path]:
    """The files git tracks at HEAD under a directory (none outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", "."],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [directory / name for name in out.stdout.split("\0") if name] if not out.returncode else []
    )


def _shown(value) -> bool:
    return value not in (None, {}, []) and not (isinstance(value, float) and math.isnan(value))


def _score(log) -> str:
    """The headline final line's numbers, else the last step line's."""
    if log.headline is not None:
        fields = log.finals[log.headline]
        return log.headline + " " + " ".join(f"{k} {fields[k]:.4f}" for k in SCORES if k in fields)
    last = [f"{m} {getattr(log, m):.4f}" for m in FINAL if _shown(getattr(log, m, None))]
    return ", ".join(last) + " (no final line)" if last else "no metrics"


def _summary(log, prefix: str) -> str:
    seed = log.seed if log.seed is not None else "not logged"  # a log states what it states
    planned = f"/{log.steps_planned:g}" if _shown(log.steps_planned) else ""
    time = f", {log.train_time_s:.1f} s" if _shown(log.train_time_s) else ""
    return f"{prefix}{log.source}, {log.steps}{planned} steps, seed {seed}{time}; {_score(log)}"


def _details(log) -> str:
    lines = [_summary(log, f"{log.path}: run {log.trial}: ")]
    for field in dataclasses.fields(log):
        value = getattr(log, field.name)
        if field.name in ("path", "points", "config", "finals", "sizes") or not _shown(value):
            continue
        lines.append(f"  {field.name}: {value:g}" if isinstance(value, float) else
                     f"  {field.name}: {value}")  # fmt: skip
    lines += [f"  final {n}: {_fields(f)}" for n, f in log.finals.items()]
    lines += [f"  size {n}: {v} bytes" for n, v in log.sizes.items()]
    lines += [f"  cfg.{k}: {v}" for k, v in sorted(log.config.items())]
    lines.append(f"  curve points: {len(log.points)}")
    return "\n".join(lines)


def _fields(fields: dict) -> str:
    return " ".join(f"{k} {v:g}" for k, v in fields.items())


def _yield(path: Path, runs: list, summary: bool) -> str:
    if not summary:
        return "\n".join(_details(log) for log in runs)
    if len(runs) == 1:
        return _summary(runs[0], f"{path}: ")
    lines = [f"{path}: {runs[0].source}, {len(runs)} runs"]
    return "\n".join(lines + [_summary(log, f"  run {log.trial}: ") for log in runs])


def _import_logs(args: argparse.Namespace) -> int:
    """Each log's yield (or why it is refused), then totals; exit status 1 if any was refused."""
    from speedlab.logformats import NotATrainLog, parse_runs

    files, skipped, absent = _log_files(args.paths)
    refused, failed, n_runs = Counter(), 0, 0
    for path in files:
        try:
            runs = parse_runs(path, args.fmt)
        except NotATrainLog as e:
            refused[str(e).split(": not a training log: ")[-1]] += 1
            print(f"{path}: refused: {str(e).removeprefix(f'{path}: ')}")
            continue
        except (OSError, ValueError) as e:
            failed += 1
            print(f"{path}: failed: {str(e).removeprefix(f'{path}:').strip()}")
            continue
        n_runs += len(runs)
        print(_yield(path, runs, args.summary))
    print(_totals(len(files), refused, failed, n_runs, skipped, absent))
    return 1 if refused or failed else 0


def _totals(files, refused: Counter, failed, runs, skipped: Counter, absent) -> str:
    parsed = files - sum(refused.values()) - failed
    lines = [f"{parsed} of {files} file(s) read: {parsed} training log(s), {runs} run(s)"]
    lines += [f"refused: {n} ({reason})" for reason, n in refused.most_common()]
    if failed:
        lines.append(f"failed: {failed} (missing or unreadable, or a line that does not parse)")
    lines.append(f"absent from the snapshot: {len(absent)} (tracked by git, not on disk)")
    lines += [f"  {p}" for p in absent]
    if skipped:
        kinds = ", ".join(f"{k} {n}" for k, n in skipped.most_common())
        lines.append(f"skipped, not logs by name: {sum(skipped.values())} ({kinds})")
    return "\n".join(lines)


def _log_format(text: str):
    """--format: auto, a format name, or a declared spec as a JSON object."""
    from speedlab.analysis.import_logs import log_format

    return log_format(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="speedlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in DELEGATED.items():
        sub.add_parser(name, help=summary, add_help=False)
    s = sub.add_parser("schema", help="the documented config keys: type, default, description")
    s.add_argument("prefix", nargs="?", default="", help="only keys starting with this")
    s.set_defaults(run=_schema)
    i = sub.add_parser(
        "import-logs", help="what parameter-golf / modded-nanogpt / nanochat logs yield"
    )
    i.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    i.add_argument("--summary", action="store_true", help="one line per file (per run)")
    i.add_argument("--format", dest="fmt", default="auto", type=_log_format,
                   help="auto, parameter_golf, modded, nanochat, or a spec as JSON")  # fmt: skip
    i.set_defaults(run=_import_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, rest = p.parse_known_args(argv)
    if args.command in DELEGATED:
        return DELEGATED[args.command][0](rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
