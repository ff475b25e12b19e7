"""report.md: a study written up as a lab note, from runs.parquet, stats.csv and the figures.

No number is computed here that stats.py does not already give; this module only words them.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pandas as pd

from speedlab.stats import INSUFFICIENT, NO_DIFFERENCE, summarize

LABELS = {
    "q_val_bpb": "post-quant val_bpb",
    "q_val_loss": "post-quant val_loss",
    "val_bpb": "val_bpb",
    "val_loss": "val_loss",
    "compressed_bytes": "int8+zlib bytes",
    "train_time_s": "train time (s)",
}


def _num(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "–" if p is None or math.isnan(p) else f"{p:.3g}"


def _summary_table(runs: pd.DataFrame, conditions: list[str], planned: int) -> str:
    """Mean ± sd [95% CI] (n) per condition for the headline metrics."""
    cells: dict[str, dict[str, str]] = {c: {} for c in conditions}
    for metric in ("q_val_bpb", "val_bpb", "compressed_bytes", "train_time_s"):
        digits = 0 if metric == "compressed_bytes" else (1 if metric == "train_time_s" else 4)
        s = summarize(runs, metric, conditions, planned).set_index("condition")
        for c in conditions:
            r = s.loc[c]
            cells[c].setdefault("n / planned", f"{int(r['n'])} / {planned}")
            cells[c][LABELS[metric]] = (
                f"{_num(r['mean'], digits)} ± {_num(r['sd'], digits)} "
                f"[{_num(r['ci_low'], digits)}, {_num(r['ci_high'], digits)}]"
            )
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.name = "condition"
    return table.to_markdown()


def _verdict_sentence(row: pd.Series, base_row: pd.Series, label: str, alpha: float) -> str:
    head = (
        f"**{row['condition']}**: {_num(row['mean'])} vs {_num(base_row['mean'])} {label} "
        f"({row['diff_pct']:+.2f}%)"
    )
    if row["verdict"] == INSUFFICIENT:
        return f"{head}: insufficient data (n={int(row['n'])} vs {int(base_row['n'])}; need ≥ 2)."
    tests = (
        f"Welch t={row['welch_t']:.2f}, df={row['welch_df']:.1f}, p={_p(row['welch_p'])}; "
        f"Student t={row['student_t']:.2f}, df={row['student_df']:.0f}, p={_p(row['student_p'])}"
    )
    if row["verdict"] == NO_DIFFERENCE:
        words = (
            f"no detectable difference at α={alpha:g} with n={int(row['n'])} vs "
            f"{int(base_row['n'])} seeds"
        )
    else:
        words = f"**{row['verdict']}** than {row['baseline']} at α={alpha:g}"
    return f"{head}, {tests}: {words}."


def write_report(
    study: str,
    description: str,
    runs: pd.DataFrame,
    stats_csv: str | Path,
    figures: dict[str, str | Path],
    out_md: str | Path,
    metric: str,
    baseline: str,
    planned_seeds: int,
) -> str:
    out_md = Path(out_md)
    stats = pd.read_csv(stats_csv)
    conditions = list(stats["condition"])
    label = LABELS.get(metric, metric)
    alpha = float(stats["alpha"].iloc[0])
    base_row = stats.set_index("condition").loc[baseline]
    base_row["condition"] = baseline
    first = runs.iloc[0]
    lines = [
        f"# Study `{study}`",
        "",
        description.strip() or "(no description in the config)",
        "",
        "## Design",
        "",
        "- Conditions: "
        + ", ".join(f"`{c}`" + (" (baseline)" if c == baseline else "") for c in conditions),
        f"- Seeds: {planned_seeds} planned per condition, {len(runs)} runs present "
        f"({int((~runs['diverged']).sum())} finished without diverging)",
        f"- Training: {int(first['steps'])} steps, {int(first['tokens']):,} tokens per run, "
        f"model of {int(first['n_params']):,} parameters; {runs['train_time_s'].sum():.0f} s "
        f"of training in all",
        f"- Hardware: {', '.join(sorted(set(runs['device'])))} on "
        f"{', '.join(sorted(set(runs['host'])))}; torch {', '.join(sorted(set(runs['torch'])))}",
        f"- Primary metric: {label} (lower is better)"
        + (", after the int8+zlib roundtrip" if metric.startswith("q_") else ""),
        "",
        "## Results",
        "",
        "Mean ± sd [95% t-interval] over seeds; diverged runs excluded.",
        "",
        _summary_table(runs, conditions, planned_seeds),
        "",
        f"## Comparisons with `{baseline}` ({label})",
        "",
    ]
    for _, row in stats.iterrows():
        if row["condition"] != baseline:
            lines.append("- " + _verdict_sentence(row, base_row, label, alpha))
    lines += ["", "## Figures", ""]
    for title, path in figures.items():
        rel = os.path.relpath(Path(path).resolve(), out_md.resolve().parent)
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Runs excluded", ""]
    diverged = runs[runs["diverged"]]
    missing = [
        f"- `{c}`: {planned_seeds - int((runs['condition'] == c).sum())} planned run(s) missing"
        for c in conditions
        if (runs["condition"] == c).sum() < planned_seeds
    ]
    excluded = [
        f"- `{r.condition}` seed {r.seed}: diverged after {r.steps} steps"
        for r in diverged.itertuples()
    ] + missing
    lines += excluded or ["None: every planned run finished."]
    text = "\n".join(lines) + "\n"
    out_md.write_text(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--study", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument("--metric", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--planned-seeds", required=True, type=int)
    p.add_argument("--figure", action="append", default=[], help="'Title=path', repeatable")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    figures = dict(f.split("=", 1) for f in args.figure)
    write_report(
        args.study,
        args.description,
        pd.read_parquet(args.runs),
        args.stats,
        figures,
        args.out,
        args.metric,
        args.baseline,
        args.planned_seeds,
    )


if __name__ == "__main__":
    main()
