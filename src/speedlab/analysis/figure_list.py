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
    # What draws it: curves, final, quant or momentum (the plot rule, speedlab.analysis.figures);
    # sweep and scaling come with the sweep table and the scaling fit (their own rules).
    kind: str
    table: str = "runs"  # what it reads: results/studies/<study>/<table>.parquet
    metric: str | None = None
    x: str | None = None


# The runs columns a final_<metric> figure shows: every study metric (studies.*.metric in the
# schema) and the training time.
FINAL_METRICS = ("q_val_bpb", "val_bpb", "q_val_loss", "val_loss", "train_time_s")
PLOT_KINDS = ("curves", "final", "quant", "momentum")


def _curve(metric: str, x: str, title: str) -> Figure:
    return Figure(title, "Training curves", f"{metric} vs {x}", "curves", "curves", metric, x)


def _final(metric: str) -> Figure:
    title = (
        "Training time per condition"
        if metric == "train_time_s"
        else f"Final {metric} per condition"
    )
    return Figure(title, "Final metric per condition", f"final {metric}", "final", "runs", metric)


FIGURES = {
    "val_bpb_vs_step": _curve("val_bpb", "step", "Validation bpb vs step"),
    "val_bpb_vs_time_s": _curve("val_bpb", "time_s", "Validation bpb vs training time"),
    "train_loss_vs_step": _curve("train_loss", "step", "Train loss vs step"),
    **{f"final_{m}": _final(m) for m in FINAL_METRICS},
    "quantization_cost": Figure(
        "Quantization cost per run", "Final metric per condition", "quantization cost", "quant"
    ),
    "momentum_per_layer": Figure("Momentum per layer", "Design", "momentum per layer", "momentum"),
    "sweep": Figure("Sweep", "Sweep", "metric vs swept value", "sweep"),
    "scaling": Figure("Scaling fit", "Sweep", "scaling fit", "scaling"),
}
# The figures the plot rule draws.
PLOTTED = {name: f for name, f in FIGURES.items() if f.kind in PLOT_KINDS}


def report_figures(metric: str, momentum: bool, sweep: bool, scaling: bool) -> list[str]:
    """The report's figures in display order: curves, the study metric, time and quantization;
    then the momentum design (when the conditions differ in it), the sweep and the scaling fit
    (when the study declares them)."""
    names = [
        "val_bpb_vs_step",
        f"final_{metric}",
        "val_bpb_vs_time_s",
        "train_loss_vs_step",
        "quantization_cost",
        "final_train_time_s",
    ]
    optional = (("momentum_per_layer", momentum), ("sweep", sweep), ("scaling", scaling))
    return names + [name for name, shown in optional if shown]
