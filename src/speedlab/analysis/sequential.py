"""Seeds added until decided, validly: group-sequential designs for 2 to 12 seeds per arm.

Maintainers add seeds after looking ("gave this 10 more runs => was able to accept it"); done
naively that inflates false positives. Here the looks are declared (`adaptive.looks`), alpha is
spent across them by a Lan-DeMets function (O'Brien-Fleming or Pocock type), and each look's
interim analysis stops a comparison at its efficacy bound, at its (non-binding) futility bound,
or asks for the next look's seeds.

At this field's n the usual z boundaries do not hold (t with 1 to 11 degrees of freedom), so the
boundaries are computed for the t statistic itself: under H0 the sequence of paired (or Welch)
t statistics at the looks does not depend on the noise, so it is simulated (seeded, so the
boundaries are the same every time) and each look's bound is the quantile that spends the
alpha the spending function allows there. tests/test_sequential.py puts 10,000 simulated null
studies through `decide` and checks the type I error.

    python -m speedlab.analysis.sequential interim --options JSON --summaries S... --out lookK.json
    python -m speedlab.analysis.sequential plot --doc sequential.json --out sequential.png
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

BOUND_SEED = 20261202
BOUND_PATHS = 200_000
RULES = ("difference", "record", "frontier")


def spent(t: np.ndarray, alpha: float, spending: str) -> np.ndarray:
    """Lan-DeMets alpha spent by information fraction t: O'Brien-Fleming type
    2 - 2 Phi(z_{1-alpha/2} / sqrt(t)), or Pocock type alpha ln(1 + (e - 1) t)."""
    t = np.asarray(t, float)
    if spending == "obrien_fleming":
        return 2 - 2 * sps.norm.cdf(sps.norm.ppf(1 - alpha / 2) / np.sqrt(t))
    if spending == "pocock":
        return alpha * np.log(1 + (math.e - 1) * t)
    raise ValueError(f"adaptive.spending: {spending!r} is not obrien_fleming or pocock")


def two_sided(rule: dict) -> bool:
    if rule["rule"] not in RULES:
        raise ValueError(
            f"adaptive: the {rule['rule']} rule has no sequential design (only {RULES})"
        )
    return rule["rule"] == "difference"


def t_paths(looks: tuple, design: str, n_paths: int, shift: float, rng) -> np.ndarray:
    """(paths, looks) t statistics of condition - reference at each look, the condition
    `shift` sd lower (0 under H0); paired: one-sample t of the differences (sd 1), independent:
    Welch t with equal arms of unit sd."""
    n_max = looks[-1]
    x = rng.standard_normal((n_paths, n_max)) - shift
    out = np.empty((n_paths, len(looks)))
    if design == "paired":
        for j, n in enumerate(looks):
            d = x[:, :n]
            out[:, j] = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
        return out
    y = rng.standard_normal((n_paths, n_max))
    for j, n in enumerate(looks):
        a, b = x[:, :n], y[:, :n]
        se = np.sqrt(a.var(1, ddof=1) / n + b.var(1, ddof=1) / n)
        out[:, j] = (a.mean(1) - b.mean(1)) / se
    return out


def evidence(t, two: bool):
    """Large means evidence against H0: |t| two-sided, -t one-sided (the condition lower)."""
    return np.abs(t) if two else -np.asarray(t)


def _quantile_bounds(e: np.ndarray, increments: np.ndarray, upper: bool) -> np.ndarray:
    """Bounds spending each increment among the paths still going (an upper bound stops
    paths above it; a lower one, paths below)."""
    alive = np.ones(len(e), bool)
    bounds = np.empty(e.shape[1])
    for k, inc in enumerate(increments):
        vals = np.where(alive, e[:, k], -np.inf if upper else np.inf)
        q = 1 - inc if upper else inc
        bounds[k] = np.quantile(vals, np.clip(q, 0, 1))
        alive &= (e[:, k] <= bounds[k]) if upper else (e[:, k] >= bounds[k])
    return bounds


@functools.lru_cache(maxsize=64)
def efficacy_bounds(looks: tuple, spending: str, design: str, two: bool, alpha: float):
    """Each look's efficacy bound on the evidence scale, spending alpha by the function."""
    rng = np.random.default_rng(BOUND_SEED)
    e = evidence(t_paths(looks, design, BOUND_PATHS, 0.0, rng), two)
    cum = spent(np.array(looks) / looks[-1], alpha, spending)
    return _quantile_bounds(e, np.diff(cum, prepend=0.0), upper=True)


@functools.lru_cache(maxsize=64)
def futility_bounds(looks, spending, design, two, alpha, theta: float, power: float):
    """Non-binding futility bounds: beta = 1 - power spent by the same function under the
    alternative (the condition theta sd better); never above the efficacy bound; none at the
    last look (there the design decides)."""
    eff = efficacy_bounds(looks, spending, design, two, alpha)
    rng = np.random.default_rng(BOUND_SEED + 1)
    e = evidence(t_paths(looks, design, BOUND_PATHS // 2, theta, rng), two)
    cum = spent(np.array(looks) / looks[-1], 1 - power, spending)
    inc = np.diff(cum, prepend=0.0)
    alive = np.ones(len(e), bool)
    bounds = np.full(len(looks), -np.inf)
    for k in range(len(looks) - 1):
        vals = np.where(alive, e[:, k], np.inf)
        bounds[k] = min(np.quantile(vals, inc[k]), eff[k])
        alive &= (e[:, k] >= bounds[k]) & (e[:, k] <= eff[k])
    return bounds


def decide(e: float, k: int, eff: np.ndarray, fut: np.ndarray | None) -> str:
    """A comparison at look k (0-based) with evidence e: efficacy, futility, continue, or at
    the last look max_looks."""
    if e > eff[k]:
        return "efficacy"
    if k == len(eff) - 1:
        return "max_looks"
    if fut is not None and e < fut[k]:
        return "futility"
    return "continue"


def look_statistic(x: np.ndarray, ref: np.ndarray, paired: bool, rule: dict) -> dict:
    """The t statistic of condition - reference at a look (shifted by min_delta for a record),
    its estimate and standard error."""
    if paired:
        d = x - ref
        est, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    else:
        est = float(x.mean() - ref.mean())
        se = float(math.sqrt(x.var(ddof=1) / len(x) + ref.var(ddof=1) / len(ref)))
    shift = (rule.get("min_delta") or 0.0) if rule["rule"] == "record" else 0.0
    t = (est + shift) / se if se > 0 else math.copysign(math.inf, est + shift or 1.0)
    return {"t": t, "estimate": est, "se": se, "n": len(x)}


# --- the final analysis, adjusted for the design --------------------------------------------


def stagewise_p(looks, spending, design, two, alpha, k: int, e: float) -> float:
    """Stage-wise ordering p of stopping at look k (0-based) with evidence e: the null chance of
    crossing the efficacy bound earlier, or of reaching look k with at least e."""
    eff = efficacy_bounds(looks, spending, design, two, alpha)
    rng = np.random.default_rng(BOUND_SEED)
    paths = evidence(t_paths(looks, design, BOUND_PATHS, 0.0, rng), two)
    alive = np.ones(len(paths), bool)
    p = 0.0
    for j in range(k):
        cross = alive & (paths[:, j] > eff[j])
        p += cross.mean()
        alive &= ~cross
    return float(p + (alive & (paths[:, k] >= e)).mean())


def final(stat: dict, status: str, k: int, bounds: dict, rule: dict) -> dict:
    """p, repeated confidence interval (estimate +- c_k se: it excludes the null exactly at
    efficacy) and verdict of a stopped comparison."""
    from speedlab.analysis import decision as d

    c, est, se = bounds["efficacy"][k], stat["estimate"], stat["se"]
    two = rule["rule"] == "difference"
    # One-sided rules bound condition - reference from above: a record needs it below
    # -min_delta, which is where the shifted statistic crosses c.
    low = est - c * se if two else -math.inf
    high = est + c * se
    if rule["rule"] == "difference":
        verdict = d.NO_DIFFERENCE if status != "efficacy" else (d.BETTER if est < 0 else d.WORSE)
    elif rule["rule"] == "record":
        verdict = d.RECORD if status == "efficacy" else d.NOT_RECORD
    else:
        verdict = d.BEATS_FRONTIER if status == "efficacy" else d.NOT_FRONTIER
    p = stagewise_p(*bounds["key"], k, float(evidence(stat["t"], two)))
    return {"p_adj": p, "estimate": est, "est_low": low, "est_high": high, "verdict": verdict}


# --- looks of a study -----------------------------------------------------------------------


def seeds_at_look(study: dict, k: int) -> list[int]:
    """The study's first looks[k-1] seeds (k from 1)."""
    looks = study["adaptive"]["looks"]
    if not 1 <= k <= len(looks):
        raise ValueError(f"adaptive.looks: there is no look {k} (looks: {looks})")
    if len(study["seeds"]) < looks[-1]:
        raise ValueError(
            f"adaptive.looks: the last look needs {looks[-1]} seeds, the study lists "
            f"{len(study['seeds'])}"
        )
    return list(study["seeds"][: looks[k - 1]])


def next_runs(doc: dict) -> dict[str, list[int]]:
    """{condition: seeds} the next look needs (empty when every comparison stopped)."""
    return {c: list(s) for c, s in doc.get("next", {}).items() if s}


def design_bounds(o: dict, theta: float | None) -> dict:
    """The study's efficacy and futility bounds (futility only with an alternative theta)."""
    two = two_sided(o["rule"])
    key = (tuple(o["looks"]), o["spending"], _design(o), two, float(o["alpha"]))
    eff = efficacy_bounds(*key)
    fut = None
    if o["futility"]:
        power = o["plan"].get("power", 0.8)
        fut = futility_bounds(*key, round(float(theta), 6), float(power))
    return {"key": key, "efficacy": eff, "futility": fut}


def _design(o: dict) -> str:
    """Adaptive studies run every arm on the same seeds: auto pairs them."""
    return "independent" if o["design"] == "independent" else "paired"


def alternative(o: dict, runs, first: dict) -> float | None:
    """theta: plan.min_effect (beyond min_delta for a record) over the noise sd: plan.noise_sd,
    else pooled at the first look (recorded in the doc and reused at later looks)."""
    if not o["futility"]:
        return None
    if first.get("effect_over_sd") is not None:  # set at the first look: the same bounds
        return first["effect_over_sd"]
    effect = o["plan"].get("min_effect")
    if effect is None:
        raise ValueError("adaptive.futility: needs plan.min_effect")
    if o["rule"]["rule"] == "record":
        effect -= o["rule"].get("min_delta") or 0.0
    if effect <= 0:
        raise ValueError("adaptive.futility: plan.min_effect must exceed decision.min_delta")
    sd = o["plan"].get("noise_sd")
    if sd is not None and _design(o) == "paired":
        sd *= math.sqrt(2 * (1 - o["plan"].get("pair_correlation", 0.0)))
    if sd is None:
        sd = _pooled_sd(runs, o)
    return effect / sd


def _pooled_sd(runs, o: dict) -> float:
    """The noise at the first look: the sd of per-seed differences (paired) or of the runs."""
    from speedlab.analysis.decision import pairing

    ref = _reference(o)
    spreads = []
    for cond in o["conditions"]:
        if cond == ref:
            continue
        x, r, paired = pairing(runs, o["metric"], cond, ref, _design(o))
        spreads += [np.var(x - r, ddof=1)] if paired else [np.var(x, ddof=1), np.var(r, ddof=1)]
    return float(math.sqrt(np.mean(spreads)))


def _reference(o: dict) -> str:
    return o["rule"]["against"] if o["rule"]["rule"] == "frontier" else o["baseline"]


def interim(o: dict, runs, previous: dict | None) -> dict:
    """The look's analysis: every comparison still going is tested on the seeds so far and
    stopped or continued; stopped ones keep their decision."""
    from speedlab.analysis.decision import pairing

    k = o["look"] - 1
    prev = previous or {"comparisons": {}}
    theta = alternative(o, runs, prev)
    bounds = design_bounds(o, theta)
    ref, comparisons = _reference(o), {}
    for cond in (c for c in o["conditions"] if c != ref):
        comp = prev["comparisons"].get(cond) or {
            "against": ref,
            "status": "continue",
            "history": [],
        }
        if comp["status"] == "continue":
            x, r, paired = pairing(runs, o["metric"], cond, ref, _design(o))
            stat = look_statistic(x, r, paired, o["rule"])
            e = float(evidence(stat["t"], bounds["key"][3]))
            comp = {**comp, "status": decide(e, k, bounds["efficacy"], bounds["futility"])}
            comp["history"] = [*comp["history"], _history(o, k, stat, e, bounds)]
            if comp["status"] != "continue":
                comp["final"] = final(stat, comp["status"], k, bounds, o["rule"])
        comparisons[cond] = comp
    return _doc(o, k, comparisons, bounds, theta)


def _history(o, k, stat, e, bounds) -> dict:
    fut = bounds["futility"]
    return {"look": k + 1, "n": stat["n"], "statistic": e, "t": stat["t"],
            "estimate": stat["estimate"], "se": stat["se"],
            "efficacy": float(bounds["efficacy"][k]),
            "futility": _finite(None if fut is None else fut[k])}  # fmt: skip


def _finite(b) -> float | None:
    return None if b is None or not np.isfinite(b) else float(b)


def _doc(o, k, comparisons, bounds, theta) -> dict:
    going = [c for c, comp in comparisons.items() if comp["status"] == "continue"]
    nxt = {}
    if going and k + 1 < len(o["looks"]):
        new = o["seeds"][o["looks"][k] : o["looks"][k + 1]]
        nxt = {c: list(new) for c in [_reference(o), *going]}
    fut = bounds["futility"]
    return {
        "look": k + 1, "looks": list(o["looks"]), "spending": o["spending"],
        "futility": o["futility"], "alpha": o["alpha"], "design": _design(o),
        "rule": o["rule"]["rule"], "effect_over_sd": theta,
        "efficacy_bounds": [float(b) for b in bounds["efficacy"]],
        "futility_bounds": None if fut is None else [_finite(b) for b in fut],
        "comparisons": comparisons, "next": nxt,
    }  # fmt: skip


def expected_seeds(looks, spending, design, rule, futility, effect_over_sd, alpha) -> dict:
    """Seeds per arm at which the design stops: the maximum, and the mean under H0 and under
    the alternative effect_over_sd (by simulation through `decide`)."""
    two = two_sided(rule)
    key = (tuple(looks), spending, "independent" if design == "independent" else "paired", two,
           float(alpha))  # fmt: skip
    eff = efficacy_bounds(*key)
    fut = futility_bounds(*key, round(float(effect_over_sd), 6), 0.8) if futility else None
    rng = np.random.default_rng(BOUND_SEED + 2)
    out = {"max": float(looks[-1])}
    for name, shift in (("expected_h0", 0.0), ("expected_h1", effect_over_sd)):
        e = evidence(t_paths(key[0], key[2], 4000, shift, rng), two)
        stops = [_stop_look(row, eff, fut) for row in e]
        out[name] = float(np.mean([looks[k] for k in stops]))
    return out


def _stop_look(e_row, eff, fut) -> int:
    for k, e in enumerate(e_row):
        if decide(float(e), k, eff, fut) != "continue":
            return k
    return len(e_row) - 1


def plot(doc: dict, out_png) -> Path:
    """Bounds per look (seeds per arm) and each comparison's statistic at its looks."""
    import matplotlib.pyplot as plt

    from speedlab.analysis.figures import save_figure, themed_colors

    fig, ax = plt.subplots(figsize=(8, 4.5))
    looks = doc["looks"]
    ax.plot(looks, doc["efficacy_bounds"], "k-", marker="s", label="efficacy bound")
    if doc["futility_bounds"]:
        fb = [np.nan if b is None else b for b in doc["futility_bounds"]]
        ax.plot(looks, fb, "k--", marker="v", label="futility bound")
    comps = doc["comparisons"]
    for (cond, comp), color in zip(comps.items(), themed_colors(len(comps)), strict=True):
        h = comp["history"]
        ax.plot([r["n"] for r in h], [r["statistic"] for r in h], "-o", color=color,
                label=f"{cond}: {comp['status']} at look {h[-1]['look']}")  # fmt: skip
    ax.set_xticks(looks)
    ax.set_xlabel("seeds per arm at the look")
    ax.set_ylabel("|t|" if doc["rule"] == "difference" else "−t (condition lower)")
    ax.set_title(f"Group-sequential design ({doc['spending']}, α={doc['alpha']:g})")
    ax.legend(fontsize=8)
    note = "a comparison stops above its efficacy bound or below its futility bound"
    return save_figure(fig, out_png, footnote=note)


def _read_runs(summaries: list[Path], baseline: str):
    from speedlab.analysis.collect import collect

    runs, _ = collect([Path(s) for s in summaries], baseline)
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m speedlab.analysis.sequential", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("interim", help="one look's interim analysis")
    i.add_argument("--options", required=True, type=json.loads)
    i.add_argument("--summaries", nargs="+", required=True, type=Path)
    i.add_argument("--out", required=True, type=Path)
    g = sub.add_parser("plot", help="the boundary figure")
    g.add_argument("--doc", required=True, type=Path)
    g.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    if args.command == "plot":
        plot(json.loads(args.doc.read_text()), args.out)
        return
    o = args.options
    previous = json.loads(Path(o["previous"]).read_text()) if o.get("previous") else None
    try:
        doc = interim(o, _read_runs(args.summaries, o["baseline"]), previous)
    except ValueError as e:
        raise SystemExit(f"speedlab.analysis.sequential: studies.{o['study']}.{e}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for cond, comp in doc["comparisons"].items():
        print(f"look {doc['look']}: {cond} vs {comp['against']}: {comp['status']}")


if __name__ == "__main__":
    main()
