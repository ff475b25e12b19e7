"""The study figures in one place: each one's file name, what it plots from which table, its title
in the report and its group in Snakemake's report.

Plain data, no plotting: the workflow imports it (without loading matplotlib) for the plot rule's
wildcard, inputs and report flags and for the report's figure list; speedlab.analysis.figures
draws what an entry names. Every figure is results/studies/<study>/figures/<name>.png, with a
PDF beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    title: str  # its heading in the report
    subcategory: str  # its group in Snakemake's report
    label: str  # its label there
    # What draws it: curves, final, paired, quant or momentum (the plot rule,
    # speedlab.analysis.figures); sweep and scaling come with the sweep table and the scaling fit,
    # sequential with the interim analysis (speedlab.analysis.sequential plot) and curve_rule
    # with the rule over steps (speedlab.analysis.curves) and compute with the compute
    # multipliers (speedlab.analysis.compute): their own rules.
    kind: str
    table: str = "runs"  # what the plot rule reads: results/studies/<study>/<table>.parquet
    metric: str | None = None
    x: str | None = None


# The runs columns a final_<metric> and a paired_<metric> figure show: every study metric
# (studies.*.metric in the schema) and the training time.
FINAL_METRICS = (
    "q_val_bpb",
    "val_bpb",
    "q_val_loss",
    "val_loss",
    "steps_to_target",
    "time_to_target",
    "hellaswag_acc",
    "train_time_s",
)
PLOT_KINDS = ("curves", "final", "paired", "quant", "momentum")


def _curve(metric: str, x: str, title: str) -> Figure:
    return Figure(title, "Training curves", f"{metric} vs {x}", "curves", "curves", metric, x)


def _final(metric: str) -> Figure:
    title = (
        "Training time per condition"
        if metric == "train_time_s"
        else f"Final {metric} per condition"
    )
    return Figure(title, "Final metric per condition", f"final {metric}", "final", "runs", metric)


def _paired(metric: str) -> Figure:
    title = f"{metric} per seed: matched seeds and their differences from the baseline"
    return Figure(title, "Paired seeds", f"paired {metric}", "paired", "runs", metric)


FIGURES = {
    "val_bpb_vs_step": _curve("val_bpb", "step", "Validation bpb vs step"),
    "val_bpb_vs_time_s": _curve("val_bpb", "time_s", "Validation bpb vs training time"),
    "train_loss_vs_step": _curve("train_loss", "step", "Train loss vs step"),
    **{f"final_{m}": _final(m) for m in FINAL_METRICS},
    **{f"paired_{m}": _paired(m) for m in FINAL_METRICS},
    "quantization_cost": Figure(
        "Quantization cost per run", "Final metric per condition", "quantization cost", "quant"
    ),
    "momentum_per_layer": Figure("Momentum per layer", "Design", "momentum per layer", "momentum"),
    "sweep": Figure("Sweep", "Sweep", "metric vs swept value", "sweep"),
    "scaling": Figure("Scaling fit", "Sweep", "scaling fit", "scaling"),
    "sequential": Figure(
        "Sequential design: the statistic at each look",
        "Decision",
        "sequential boundaries",
        "sequential",
    ),
    "rule_over_steps": Figure(
        "Decision rule over training steps", "Decision", "rule over steps", "curve_rule", "curves"
    ),
    "metric_vs_flops": Figure(
        "Validation metric vs training FLOPs", "Training curves", "vs FLOPs", "compute", "curves"
    ),
}
# The figures the plot rule draws.
PLOTTED = {name: f for name, f in FIGURES.items() if f.kind in PLOT_KINDS}


def report_figures(
    metric: str,
    momentum: bool,
    sweep: bool,
    scaling: bool,
    paired: bool = False,
    sequential: bool = False,
    rule_steps: bool = False,
    columns: set[str] | None = None,
    compute: bool = False,
) -> list[str]:
    """The report's figures in display order: curves, the study metric, its per-seed
    differences (when there is something to pair), the sequential boundaries and the rule over
    steps (when the study's design and rule have them), time and quantization; then the
    momentum design (when the conditions differ in it), the sweep and the scaling fit (when the
    study declares them). columns: for a study made only of published tables (no curves),
    the columns they have: only the figures those columns can draw. compute: the metric
    against training FLOPs, after the curves against time (when the runs know their FLOPs)."""
    decision = (
        (f"paired_{metric}", paired),
        ("sequential", sequential),
        ("rule_over_steps", rule_steps),
    )
    names = [
        "val_bpb_vs_step",
        f"final_{metric}",
        *(name for name, shown in decision if shown),
        "val_bpb_vs_time_s",
        *(["metric_vs_flops"] if compute else []),
        "train_loss_vs_step",
        "quantization_cost",
        "final_train_time_s",
    ]
    optional = (("momentum_per_layer", momentum), ("sweep", sweep), ("scaling", scaling))
    names += [name for name, shown in optional if shown]
    if columns is None:
        return names
    needs = {"quantization_cost": {"val_bpb", "q_val_bpb"}, "final_train_time_s": {"train_time_s"}}
    return [
        n for n in names
        if FIGURES[n].table == "runs" and FIGURES[n].kind != "curve"
        and needs.get(n, set()) <= columns
    ]  # fmt: skip
