"""Per-condition summaries, and each condition judged by the study's decision rule.

Every statistic comes from scipy/statsmodels (through speedlab.analysis.decision); this module
decides which runs count, which comparisons form a family and how the results are laid out.
Metrics are lower-is-better (loss, bpb, bytes, seconds, steps), but for those in
decision.HIGHER_IS_BETTER (hellaswag_acc), which the decision rule tests mirrored.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special as spsp
from scipy import stats as sps

from speedlab.analysis.decision import (
    BETTER,
    HIGHER_IS_BETTER,
    INSUFFICIENT,
    NO_DIFFERENCE,
    ONE_ARM,
    WORSE,
    evaluate,
    holm_levels,
    mwu_min_p,
    pairing,
    resolve_rule,
    wilcoxon_min_p,
)
from speedlab.analysis.options import REQUIRED, runs_parser
from speedlab.analysis.power import detectable_effect, seeds_for_effect
from speedlab.files import atomic_path

SUMMARY_COLUMNS = [
    "condition",
    "n_planned",
    "n",
    "mean",
    "sd",
    "sem",
    "ci_low",
    "ci_high",
    "boot_low",
    "boot_high",
]
COMPARE_COLUMNS = [
    "condition",
    "baseline",
    "diff",
    "diff_pct",
    "student_t",
    "student_df",
    "student_p",
    "welch_t",
    "welch_df",
    "welch_p",
    "verdict",
    "mwu_p",
    "hedges_g",
    "g_low",
    "g_high",
    "diff_low",
    "diff_high",
    # The decision rule's own test (speedlab.analysis.decision), Holm-adjusted over the family.
    "design",
    "n_pairs",
    "rule",
    "against",
    "test",
    "statistic",
    "df",
    "p",
    "p_adj",
    "adjusted",
    "estimate",
    "est_low",
    "est_high",
    "est_level",
    # Companions when paired, and the smallest p the rank tests can reach at this n.
    "paired_t",
    "paired_df",
    "paired_p",
    "wilcoxon_p",
    "mwu_min_p",
    "wilcoxon_min_p",
    # Planning from the smallest effect that matters (speedlab.analysis.power).
    "detectable",
    "noise_sd",
    "noise_source",
    "n_for_min_effect",
]
# Columns that existed before the bootstrap/effect-size additions; their order in the CSV is fixed.
_SUMMARY_V1 = SUMMARY_COLUMNS[:-2]
_COMPARE_V1 = COMPARE_COLUMNS[: COMPARE_COLUMNS.index("verdict") + 1]
# The single CSV the pipeline keeps: what was measured, then the per-arm summary, then the test.
# Columns added later go after `verdict` (and before `alpha`) so old readers keep working.
STATS_COLUMNS = [
    "metric",
    *_SUMMARY_V1,
    *_COMPARE_V1[1:],
    *SUMMARY_COLUMNS[len(_SUMMARY_V1) :],
    *COMPARE_COLUMNS[len(_COMPARE_V1) :],
    "alpha",
]

# Bootstrap settings: a fixed seed makes stats.csv byte-for-byte reproducible.
BOOT_SEED = 12345
BOOT_RESAMPLES = 9999
POWER_TARGET = 0.8
# Metrics read off the validation curve: censored runs count as "at least this".
CURVE_METRICS = ("steps_to_target", "time_to_target")


def values(runs: pd.DataFrame, metric: str, condition: str) -> np.ndarray:
    """The metric's values for one condition over the seeds that count.

    A diverged run's final metric is not a draw from the condition's distribution (it is often
    NaN or a huge number), so it is excluded rather than allowed to dominate the mean.
    """
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} is not a column of the runs table")
    rows = runs[(runs["condition"] == condition) & ~runs["diverged"].astype(bool)]
    vals = rows[metric].to_numpy(dtype=float)
    return vals[~np.isnan(vals)]


def summary_row(x: np.ndarray, alpha: float) -> dict[str, float]:
    n = len(x)
    if n == 0:
        return {"mean": np.nan, "sd": np.nan, "sem": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    mean = float(np.mean(x))
    if n < 2:
        return {"mean": mean, "sd": np.nan, "sem": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    sd = float(np.std(x, ddof=1))
    sem = float(sps.sem(x, ddof=1))
    if sem > 0:
        lo, hi = sps.t.interval(1 - alpha, df=n - 1, loc=mean, scale=sem)
    else:
        # scipy gives NaN for scale=0; identical seeds mean a zero-width interval, not no data.
        lo = hi = mean
    return {"mean": mean, "sd": sd, "sem": sem, "ci_low": float(lo), "ci_high": float(hi)}


def bootstrap_interval(x: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """(1 - alpha) bootstrap interval of the mean: BCa, else percentile; NaN when n < 2.

    BCa needs a jackknife acceleration and a bias estimate; for tiny or degenerate samples scipy
    returns NaN (with a DegenerateDataWarning), in which case the percentile interval is used.
    """
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return np.nan, np.nan
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sps.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sps.bootstrap(
                (x,),
                np.mean,
                n_resamples=BOOT_RESAMPLES,
                confidence_level=1 - alpha,
                method=method,
                rng=np.random.default_rng(BOOT_SEED),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    return lo, hi


def summarize(
    runs: pd.DataFrame,
    metric: str,
    conditions: list[str],
    planned_seeds: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per condition, in the given order: n planned/achieved, mean, sd, sem, t-interval,
    bootstrap interval of the mean."""
    rows = []
    for cond in conditions:
        x = values(runs, metric, cond)
        boot_low, boot_high = bootstrap_interval(x, alpha)
        rows.append(
            {
                "condition": cond,
                "n_planned": planned_seeds,
                "n": len(x),
                **summary_row(x, alpha),
                "boot_low": boot_low,
                "boot_high": boot_high,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"n_planned": int, "n": int})


def verdict(diff: float, welch_p: float, n_cond: int, n_base: int, alpha: float = 0.05) -> str:
    """Plain-words outcome for a lower-is-better metric."""
    if n_cond < 2 or n_base < 2:
        return INSUFFICIENT
    # NaN p (both arms constant and equal) is as uninformative as a large p.
    if np.isnan(welch_p) or welch_p >= alpha:
        return NO_DIFFERENCE
    return BETTER if diff < 0 else WORSE


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and do not count in m.

    Sort ascending p_(1) <= ... <= p_(m); adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    (statsmodels' multipletests(method="holm") gives the same; it is not a dependency here.)
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[ok][order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    out[ok] = adjusted
    return out


def hedges_g(x: np.ndarray, base: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """Bias-corrected standardized mean difference (x - base) / pooled sd, and its CI.

    d = (mean_x - mean_b) / s_p, s_p^2 = ((n1-1) s1^2 + (n2-1) s2^2) / (n1+n2-2);
    g = J d with the exact J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)) (Hedges 1981),
    df = n1+n2-2 (~ 1 - 3/(4 df - 1)). Normal-approximation CI, Borenstein et al. (2009),
    Introduction to Meta-Analysis, eqs. 4.20 and 4.24:
    V_d = (n1+n2)/(n1 n2) + d^2 / (2 (n1+n2)), SE_g = J sqrt(V_d), g +- z_{1-alpha/2} SE_g.
    Negative g means the condition is lower (better) than the baseline. NaN if either n < 2 or
    the pooled sd is 0.
    """
    n1, n2 = len(x), len(base)
    if n1 < 2 or n2 < 2:
        return np.nan, np.nan, np.nan
    df = n1 + n2 - 2
    pooled_var = ((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(base, ddof=1)) / df
    if not pooled_var > 0:
        return np.nan, np.nan, np.nan
    d = (np.mean(x) - np.mean(base)) / np.sqrt(pooled_var)
    j = np.exp(spsp.gammaln(df / 2) - spsp.gammaln((df - 1) / 2)) / np.sqrt(df / 2)
    g = j * d
    se = j * np.sqrt((n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2)))
    lo, hi = sps.norm.interval(1 - alpha, loc=g, scale=se)
    return float(g), float(lo), float(hi)


def compare(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    alpha: float = 0.05,
    design: str = "auto",
    rule: dict | None = None,
    plan: dict | None = None,
) -> pd.DataFrame:
    """Each condition against its reference under the decision rule (speedlab.analysis.decision):
    the baseline, decision.against for a frontier, or the rule's value for target and
    known_sigma (then the baseline is tested too). The rule's tests are one Holm family; each
    interval is at the level Holm tested it at (decision.holm_levels), so verdict and interval
    agree. Student, Welch, Mann-Whitney, the paired t and Wilcoxon, and Hedges g are companions.
    """
    rule = {**(rule or resolve_rule({"alpha": alpha})), "higher": metric in HIGHER_IS_BETTER}
    reference = rule["against"] if rule["rule"] == "frontier" else baseline
    one_arm = rule["rule"] in ONE_ARM
    tested = [c for c in conditions if one_arm or c != reference]
    arms = [_arms(runs, metric, c, None if one_arm else reference, design) for c in tested]
    first = [evaluate(*a.primary, rule, a.paired, censored=a.censored) for a in arms]
    p_adj, levels = holm_levels([r["p"] for r in first], rule["alpha"])
    several = int(np.isfinite(p_adj).sum()) > 1
    rows = []
    for cond, a, res, p, level in zip(tested, arms, first, p_adj, levels, strict=True):
        if several and np.isfinite(level):
            tost = rule["rule"] == "equivalence"
            res = evaluate(*a.primary, rule, a.paired, 1 - 2 * (1 - level) if tost else level,
                           censored=a.censored)  # fmt: skip
        against = None if one_arm else reference
        row = {"condition": cond, "baseline": against, **_companions(a, alpha)}
        row.update(_primary(res, p if several else res["p"], several, rule, a, against))
        row.update(_planning(a, rule, plan or {}))
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


class _Arms(NamedTuple):
    """One comparison's data: x and its reference as independent arms, and as the test takes
    them (aligned by seed when paired), with the censoring flags of a curve metric."""

    x: np.ndarray
    ref: np.ndarray | None
    primary: tuple
    paired: bool
    censored: tuple | None


def _arms(runs, metric, cond, reference, design) -> _Arms:
    x = values(runs, metric, cond)
    if reference is None:
        return _Arms(x, None, (x, None), False, _censor_flags(runs, metric, cond, None))
    ref = values(runs, metric, reference)
    flags = _censor_flags(runs, metric, cond, reference)
    if flags is not None:  # ranks over all runs, not pairs
        return _Arms(x, ref, (x, ref), False, flags)
    px, pref, paired = pairing(runs, metric, cond, reference, design)
    return _Arms(x, ref, (px, pref), paired, None)


def _censor_flags(runs, metric, cond, reference):
    """(cx, cref) for a curve metric whose arms hold a censored run, else None."""
    if metric not in CURVE_METRICS or "target_censored" not in runs:
        return None

    def flags(name):
        rows = runs[(runs["condition"] == name) & ~runs["diverged"].astype(bool)]
        return rows.loc[rows[metric].notna(), "target_censored"].astype(bool).to_numpy()

    cx = flags(cond)
    cref = None if reference is None else flags(reference)
    if not cx.any() and (cref is None or not cref.any()):
        return None
    return cx, (np.zeros(0, bool) if cref is None else cref)


def _primary(res: dict, p_adj: float, several: bool, rule: dict, a: _Arms, against) -> dict:
    return {
        "design": "paired" if a.paired else "independent",
        "n_pairs": len(a.primary[0]) if a.paired else np.nan,
        "rule": rule["rule"],
        "against": against,
        "test": res["test"],
        "statistic": res["statistic"],
        "df": res["df"],
        "p": res["p"],
        "p_adj": p_adj,
        "adjusted": "holm" if several else "none",
        "estimate": res["estimate"],
        "est_low": res["est_low"],
        "est_high": res["est_high"],
        "est_level": res["est_level"],
        "verdict": res["verdict"],
    }


def _companions(a: _Arms, alpha: float) -> dict:
    """The tests beside the rule's: Student, Welch (with its unadjusted interval), Mann-Whitney
    and Hedges g on the arms as independent samples; the paired t and Wilcoxon when paired."""
    x, base = a.x, a.ref if a.ref is not None else np.array([])
    base_mean = float(np.mean(base)) if len(base) else np.nan
    mean = float(np.mean(x)) if len(x) else np.nan
    g, g_low, g_high = hedges_g(x, base, alpha)
    out = {
        "diff": mean - base_mean,
        "diff_pct": 100.0 * (mean - base_mean) / base_mean if base_mean else np.nan,
        **_t_tests(x, base, alpha),
        "hedges_g": g,
        "g_low": g_low,
        "g_high": g_high,
        "mwu_min_p": mwu_min_p(len(x), len(base)) if len(base) else np.nan,
        **dict.fromkeys(("paired_t", "paired_df", "paired_p", "wilcoxon_p", "wilcoxon_min_p"),
                        np.nan),
    }  # fmt: skip
    if a.paired:
        out.update(_paired_tests(*a.primary))
    return out


def _paired_tests(x: np.ndarray, ref: np.ndarray) -> dict:
    t = sps.ttest_rel(x, ref)
    deltas = x - ref
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = sps.wilcoxon(x, ref).pvalue if np.any(deltas != 0) else np.nan
    return {"paired_t": float(t.statistic), "paired_df": float(t.df), "paired_p": float(t.pvalue),
            "wilcoxon_p": float(w), "wilcoxon_min_p": wilcoxon_min_p(len(x))}  # fmt: skip


def _planning(a: _Arms, rule: dict, plan: dict) -> dict:
    """The effect the achieved n detects with plan.power, and the seeds plan.min_effect
    needs, from the noise of these runs (paired: the sd of the per-seed differences) or
    plan.noise_sd."""
    design = "paired" if a.paired else "independent"
    sd, source = _noise(a, plan)
    power = plan.get("power", POWER_TARGET)
    n, n_ref = len(a.primary[0]), 0 if a.primary[1] is None else len(a.primary[1])
    found = {
        "detectable": np.nan,
        "noise_sd": sd,
        "noise_source": source,
        "n_for_min_effect": np.nan,
    }
    if np.isfinite(sd):
        found["detectable"] = detectable_effect(n, n_ref, sd, design=design, rule=rule, power=power)
        if plan.get("min_effect"):
            found["n_for_min_effect"] = seeds_for_effect(
                plan["min_effect"], sd, design=design, rule=rule, power=power
            )
    return found


def _noise(a: _Arms, plan: dict) -> tuple[float, str | None]:
    x, ref = a.primary
    if a.paired and len(x) >= 2:
        return float(np.std(x - ref, ddof=1)), "pooled from runs"
    arms = [v for v in (a.x, a.ref) if v is not None and len(v) >= 2]
    if arms and not a.paired:
        ss = sum(float(np.var(v, ddof=1)) * (len(v) - 1) for v in arms)
        return float(np.sqrt(ss / sum(len(v) - 1 for v in arms))), "pooled from runs"
    sd = plan.get("noise_sd")
    if sd is None:
        return np.nan, None
    if a.paired:
        return sd * float(np.sqrt(2 * (1 - plan.get("pair_correlation", 0.0)))), "plan.noise_sd"
    return float(sd), "plan.noise_sd"


def _t_tests(x: np.ndarray, base: np.ndarray, alpha: float) -> dict[str, float]:
    """Student and Welch t-tests, Welch's (unadjusted) interval of the difference and
    Mann-Whitney U of x against base; NaN when an arm has fewer than 2 values."""
    if len(x) < 2 or len(base) < 2:
        columns = (*COMPARE_COLUMNS[4:10], "mwu_p", "diff_low", "diff_high")
        return dict.fromkeys(columns, np.nan)
    student = sps.ttest_ind(x, base, equal_var=True)
    welch = sps.ttest_ind(x, base, equal_var=False)
    diff_ci = welch.confidence_interval(1 - alpha)
    return {
        "diff_low": float(diff_ci.low),
        "diff_high": float(diff_ci.high),
        "student_t": float(student.statistic),
        "student_df": float(student.df),
        "student_p": float(student.pvalue),
        "welch_t": float(welch.statistic),
        "welch_df": float(welch.df),
        "welch_p": float(welch.pvalue),
        "mwu_p": float(sps.mannwhitneyu(x, base, alternative="two-sided").pvalue),
    }


def apply_sequential(table: pd.DataFrame, doc: dict) -> pd.DataFrame:
    """The group-sequential design's final analysis replaces the fixed-design decision: its
    design-adjusted p, interval and verdict (speedlab.analysis.sequential)."""
    table = table.copy()
    for cond, comp in doc["comparisons"].items():
        final = comp.get("final")
        at = table["condition"] == cond
        if final is None or not at.any():
            continue
        for col in ("p_adj", "estimate", "est_low", "est_high", "est_level", "verdict"):
            if col in final:
                table.loc[at, col] = final[col]
        table.loc[at, "adjusted"] = "sequential"
        table.loc[at, "test"] = (
            table.loc[at, "test"] + f" (group-sequential, stopped: {comp['status']})"
        )
    return table


def stats_table(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    planned_seeds: int,
    alpha: float = 0.05,
    design: str = "auto",
    rule: dict | None = None,
    plan: dict | None = None,
) -> pd.DataFrame:
    """Summary joined with comparisons; a reference's comparison cells stay empty."""
    if baseline not in conditions:
        raise ValueError(f"baseline {baseline!r} is not among conditions {conditions}")
    rule = rule or resolve_rule({"alpha": alpha})
    summary = summarize(runs, metric, conditions, planned_seeds, rule["alpha"])
    comparison = compare(runs, metric, baseline, conditions, rule["alpha"], design, rule, plan)
    table = summary.merge(comparison, on="condition", how="left")
    table.insert(0, "metric", metric)
    table["alpha"] = rule["alpha"]
    return table[STATS_COLUMNS]


def excluded_runs(runs: pd.DataFrame, metrics: list[str]) -> list[dict]:
    """Runs left out of the statistics and why (diverged, or a metric missing)."""
    out = []
    for r in runs.itertuples(index=False):
        row = r._asdict()
        missing = [m for m in metrics if pd.isna(row[m])]
        if row["diverged"] or missing:
            reason = "diverged" if row["diverged"] else "no " + ", ".join(missing)
            out.append({"condition": row["condition"], "seed": int(row["seed"]), "reason": reason})
    return out


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: exact floats (no rounding), NaN as null, numpy ints as int."""
    return [
        {
            k: None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v)
            for k, v in r.items()
        }
        for r in table.to_dict(orient="records")
    ]


def write_stats(
    runs: pd.DataFrame,
    metric: str | list[str],
    baseline: str,
    conditions: list[str],
    planned_seeds: int,
    out_csv: str | Path,
    alpha: float = 0.05,
    out_json: str | Path | None = None,
    design: str = "auto",
    decision: dict | None = None,
    plan: dict | None = None,
    sequential: dict | None = None,
) -> pd.DataFrame:
    """stats.csv: one block of rows per metric, its own Holm family. The first (the study's
    metric) is judged by the decision rule (and, for an adaptive study, by the sequential
    design's final analysis); the others by the two-sided difference rule at the same alpha.
    stats.json holds the same numbers plus the runs excluded, for programs."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    rule = resolve_rule(decision if decision is not None else {"alpha": alpha})
    plain = resolve_rule({"alpha": rule["alpha"]})
    blocks = []
    for i, m in enumerate(metrics):
        r = rule if i == 0 else plain
        block = stats_table(runs, m, baseline, conditions, planned_seeds, r["alpha"], design, r,
                            plan if i == 0 else None)  # fmt: skip
        if i == 0 and sequential is not None:
            block = apply_sequential(block, sequential)
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    # No float_format: pandas writes round-trippable reprs, so the report sees the exact numbers.
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    if out_json is not None:
        doc = {
            "baseline": baseline,
            "conditions": conditions,
            "alpha": rule["alpha"],
            "design": design,
            "decision": rule,
            "planned_seeds": planned_seeds,
            "primary_metric": metrics[0],
            "metrics": {m: _records(table[table["metric"] == m]) for m in metrics},
            "excluded": excluded_runs(runs, metrics),
        }
        with atomic_path(out_json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return table


OPTIONS = {
    "metrics": REQUIRED,  # runs columns, primary first: ["q_val_bpb", "train_time_s"]
    "baseline": REQUIRED,
    "conditions": REQUIRED,  # in the report's order
    "planned_seeds": REQUIRED,
    "alpha": 0.05,  # without a decision rule (the rule's alpha wins)
    "design": "auto",
    "decision": None,  # studies.<s>.decision (resolved or not)
    "plan": {},
    "sequential": None,  # path of sequential.json (adaptive studies)
}


def main(argv: list[str] | None = None) -> None:
    p = runs_parser("speedlab.analysis.stats", "Summarize a study and test vs baseline.", OPTIONS)
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument("--json", type=Path, help="also write the statistics as JSON")
    args = p.parse_args(argv)
    o = args.options
    runs = pd.read_parquet(args.runs)
    sequential = json.loads(Path(o["sequential"]).read_text()) if o["sequential"] else None
    try:
        write_stats(
            runs, o["metrics"], o["baseline"], o["conditions"], o["planned_seeds"], args.out,
            o["alpha"], args.json, o["design"], o["decision"], o["plan"], sequential,
        )  # fmt: skip
    except ValueError as e:
        raise SystemExit(f"speedlab.analysis.stats: {e}") from None


if __name__ == "__main__":
    main()
