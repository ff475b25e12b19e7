"""`speedlab`: the commands a user runs by hand (the workflow's rules call the modules directly).
`speedlab COMMAND --help` tells a command's options.

    speedlab plan [--configfile FILE...] [--config KEY=VALUE...]   runs, GPU memory, GPU-hours, $
    speedlab schema [PREFIX]                                       the documented config keys
    speedlab shards info|check [--vocab V] FILE...                 inspect or verify token shards
    speedlab import-logs [--summary] FILE|DIR...                   what other tools' logs yield
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

LOG_SUFFIXES = (".log", ".txt")
FINAL = ("train_loss", "val_loss", "val_bpb", "q_val_loss", "q_val_bpb")


def _plan(argv: list[str]) -> int:
    from speedlab.plan import main

    main(argv, prog="speedlab plan")
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
}


def _schema(args: argparse.Namespace) -> int:
    from speedlab.config import schema_lines

    lines = schema_lines(args.prefix)
    if not lines:
        sys.exit(f"speedlab schema: no documented key starts with {args.prefix!r}")
    print("\n".join(lines))
    return 0


def _log_files(paths: list[Path]) -> list[Path]:
    """The files named, and the .log/.txt files under the directories named (sorted)."""
    files = []
    for path in paths:
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix in LOG_SUFFIXES and p.is_file())
            files.extend(sorted(found))
        else:
            files.append(path)
    return files


def _shown(value) -> bool:
    return value not in (None, {}, []) and not (isinstance(value, float) and math.isnan(value))


def _summary(log) -> str:
    seed = log.config.get("train.seed", "not logged")  # a log states what it states
    finals = [f"{m} {getattr(log, m):.4f}" for m in FINAL if _shown(getattr(log, m, None))]
    planned = f"/{log.steps_planned:g}" if _shown(log.steps_planned) else ""
    time = f", {log.train_time_s:.1f} s" if _shown(log.train_time_s) else ""
    return f"{log.path}: {log.source}, {log.steps}{planned} steps, seed {seed}{time}; " + (
        ", ".join(finals) or "no final metrics"
    )


def _details(log) -> str:
    lines = [_summary(log)]
    for field in dataclasses.fields(log):
        value = getattr(log, field.name)
        if field.name in ("path", "points", "config") or not _shown(value):
            continue
        lines.append(f"  {field.name}: {value:g}" if isinstance(value, float) else
                     f"  {field.name}: {value}")  # fmt: skip
    lines += [f"  cfg.{k}: {v}" for k, v in sorted(log.config.items())]
    lines.append(f"  curve points: {len(log.points)}")
    return "\n".join(lines)


def _import_logs(args: argparse.Namespace) -> int:
    """Each log's yield (or why it is refused); exit status 1 if any file was refused."""
    from speedlab.analysis.import_logs import parse_log

    files, refused = _log_files(args.paths), 0
    for path in files:
        try:
            log = parse_log(path, args.fmt)
        except (OSError, ValueError) as e:
            refused += 1
            reason = str(e).removeprefix(f"{path}:").strip()
            print(f"{path}: refused: {reason}")
            continue
        print(_summary(log) if args.summary else _details(log))
    print(f"{len(files) - refused} of {len(files)} file(s) read")
    return 1 if refused else 0


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
    i = sub.add_parser("import-logs", help="what parameter-golf / modded-nanogpt logs yield")
    i.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    i.add_argument("--summary", action="store_true", help="one line per file")
    i.add_argument("--format", dest="fmt", default="auto",
                   choices=("auto", "parameter_golf", "modded_nanogpt"))  # fmt: skip
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
