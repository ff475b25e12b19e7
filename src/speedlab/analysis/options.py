"""`--options JSON`: how the rules hand an analysis entry point its settings.

A rule resolves the study's settings (baseline, conditions, metric, sweep key...) from the
config and passes them as one JSON param, as the train rule passes its --config: a changed
setting reruns the job, and no list or number goes through a command-line string that the
module would parse back. Files stay plain options (--runs, --out...), as Snakemake names them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Marks an option the JSON must hold (the others have the default given).
REQUIRED = object()


def options_type(spec: dict[str, object]):
    """An argparse `type` reading a JSON object that has exactly the keys of `spec` (name ->
    default, or REQUIRED); absent keys take their default. Errors name the key."""

    def options(text: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
        missing = [k for k, d in spec.items() if d is REQUIRED and k not in value]
        unknown = sorted(set(value) - set(spec))
        if missing or unknown:
            raise argparse.ArgumentTypeError(
                f"missing {missing}, unknown {unknown} (keys: {', '.join(spec)})"
            )
        return {k: value.get(k, d) for k, d in spec.items()}

    return options


def add_options(parser: argparse.ArgumentParser, spec: dict[str, object], **kwargs) -> None:
    """Add --options (a JSON object with the keys of `spec`) to `parser`."""
    keys = ", ".join(k if d is REQUIRED else f"{k} (default {d!r})" for k, d in spec.items())
    parser.add_argument("--options", type=options_type(spec), help=f"JSON object: {keys}", **kwargs)


def runs_parser(prog: str, description: str, spec: dict[str, object]) -> argparse.ArgumentParser:
    """The command line every runs.parquet consumer shares: --options (the keys of `spec`) and
    --runs; the caller adds its outputs."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    add_options(p, spec, required=True)
    p.add_argument(
        "--runs", required=True, type=Path, help="runs.parquet from speedlab.analysis.collect"
    )
    return p
