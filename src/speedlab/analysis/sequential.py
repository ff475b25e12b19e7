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

from speedlab.analysis.decision import SEQUENTIAL_RULES
from speedlab.analysis.options import REQUIRED, add_options
from speedlab.files import atomic_path

BOUND_SEED = 20261202
BOUND_PATHS = 200_000
RULES = SEQUENTIAL_RULES
SPENDING = ("obrien_fleming", "pocock")


def spent(t, alpha: float, spending: str) -> np.ndarray:
    """Lan-DeMets alpha spent by information fraction t: O'Brien-Fleming type
    2 - 2 Phi(z_{1-alpha/2} / sqrt(t)), or Pocock type alpha ln(1 + (e - 1) t). One-sided rules
    put their one-sided alpha in the same formulas (as gsDesign's sfLDOF and sfLDPocock do)."""
    t = np.asarray(t, float)
    if spending == "obrien_fleming":
        return 2 - 2 * sps.norm.cdf(sps.norm.ppf(1 - alpha / 2) / np.sqrt(t))
    if spending == "pocock":
        return alpha * np.log(1 + (math.e - 1) * t)
    raise ValueError(f"adaptive.spending: {spending!r} is not one of {SPENDING}")


def check_looks(looks, n_seeds: int | None = None) -> tuple[int, ...]:
    """The looks as a tuple: at least two, increasing, the first with 2 seeds or more (a t
    statistic needs a spread), the last within the study's seeds."""
    given = list(looks)
    if len(given) < 2 or any(isinstance(n, bool) or int(n) != n for n in given):
        raise ValueError(f"adaptive.looks: {given} should be two or more seed counts")
    looks = tuple(int(n) for n in given)
    if any(b <= a for a, b in zip(looks, looks[1:], strict=False)) or looks[0] < 2:
        raise ValueError(
            f"adaptive.looks: {list(looks)} must increase and start at 2 seeds or more"
        )
    if n_seeds is not None and n_seeds < looks[-1]:
        raise ValueError(
            f"adaptive.looks: the last look needs {looks[-1]} seeds per arm, the study's "
            f"seeds list {n_seeds}"
        )
    return looks


def two_sided(rule) -> bool:
    """Whether the rule's sequential test is two-sided; only three rules have one."""
    name = rule if isinstance(rule, str) else rule["rule"]
    if name not in RULES:
        raise ValueError(
            f"adaptive: the {name} rule (decision.rule) has no sequential design; an adaptive "
            f"study needs one of {', '.join(RULES)}"
        )
    return name == "difference"


def look_statistic(x, ref, paired: bool, rule: dict) -> dict:
    """The t statistic of condition - reference (shifted by min_delta for a record: the
    improvement beyond it), the estimate and its standard error, over the last axis: one look
    of one comparison, or of many simulated studies at once. Paired: one-sample t of the
    per-seed differences; independent: Welch t."""
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    n = x.shape[-1]
    if paired:
        d = x - ref
        est, se = d.mean(-1), d.std(-1, ddof=1) / math.sqrt(n)
    else:
        m = ref.shape[-1]
        est = x.mean(-1) - ref.mean(-1)
        se = np.sqrt(x.var(-1, ddof=1) / n + ref.var(-1, ddof=1) / m)
    num = est + ((rule.get("min_delta") or 0.0) if rule["rule"] == "record" else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Identical runs (se 0): an infinite statistic, or none at all when num is 0 too.
        t = np.where(se > 0, num / se, np.where(num == 0, 0.0, np.sign(num) * np.inf))
    if t.ndim == 0:
        return {"t": float(t), "estimate": float(est), "se": float(se), "n": n}
    return {"t": t, "estimate": est, "se": se, "n": n}


def evidence(t, two: bool):
    """Large means evidence against H0: |t| two-sided, -t one-sided (the condition lower)."""
    return np.abs(t) if two else -np.asarray(t)


def _paths(looks: tuple, design: str, two: bool, n_paths: int, shift: float, seed: int):
    """(paths, looks) evidence of simulated studies, the condition `shift` sd lower (0: H0).
    Under H0 the t sequence does not depend on the mean or the sd, so unit normals do."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_paths, looks[-1])) - shift
    paired = design == "paired"
    y = np.zeros_like(x) if paired else rng.standard_normal((n_paths, looks[-1]))
    rule = {"rule": "difference"}
    t = [look_statistic(x[:, :n], y[:, :n], paired, rule)["t"] for n in looks]
    return evidence(np.stack(t, axis=1), two)


@functools.lru_cache(maxsize=16)
def null_paths(looks: tuple, design: str, two: bool) -> np.ndarray:
    """The null studies every bound and adjusted p of a design is read from."""
    out = _paths(looks, design, two, BOUND_PATHS, 0.0, BOUND_SEED)
    out.setflags(write=False)
    return out


def _increments(looks: tuple, alpha: float, spending: str) -> np.ndarray:
    return np.diff(spent(np.array(looks) / looks[-1], alpha, spending), prepend=0.0)


@functools.lru_cache(maxsize=64)
def efficacy_bounds(looks: tuple, spending: str, design: str, two: bool, alpha: float):
    """Each look's efficacy bound on the evidence scale: among null studies not yet stopped,
    the quantile above which the look's share of alpha lies (so the cumulative crossing
    probability is the alpha spent by then). Futility is ignored: it is non-binding."""
    e = null_paths(looks, design, two)
    alive = np.ones(len(e), bool)
    bounds = np.empty(len(looks))
    for k, inc in enumerate(_increments(looks, alpha, spending)):
        bounds[k] = np.quantile(np.where(alive, e[:, k], -np.inf), 1 - inc)
        alive &= e[:, k] <= bounds[k]
    bounds.setflags(write=False)
    return bounds


@functools.lru_cache(maxsize=64)
def futility_bounds(looks, spending, design, two, alpha, theta: float, power: float):
    """Non-binding futility bounds: beta = 1 - power spent by the same function under the
    alternative (the condition theta sd better), among studies still going; never above the
    efficacy bound, none at the last look (there the design decides)."""
    eff = efficacy_bounds(looks, spending, design, two, alpha)
    e = _paths(looks, design, two, BOUND_PATHS // 2, theta, BOUND_SEED + 1)
    inc = _increments(looks, 1 - power, spending)
    alive = np.ones(len(e), bool)
    bounds = np.full(len(looks), -np.inf)
    for k in range(len(looks) - 1):
        bounds[k] = min(np.quantile(np.where(alive, e[:, k], np.inf), inc[k]), eff[k])
        alive &= (e[:, k] >= bounds[k]) & (e[:, k] <= eff[k])
    bounds.setflags(write=False)
    return bounds


def design_bounds(o: dict, theta: float | None) -> dict:
    """The design's efficacy bounds and, with futility, its futility bounds for theta (the
    alternative effect in sd units); `key` names the design for stagewise_p."""
    two = two_sided(o["rule"])
    key = (check_looks(o["looks"]), o["spending"], _design(o), two, float(o["alpha"]))
    spent(1.0, key[4], key[1])  # an unknown spending function fails here, by name
    fut = None
    if o["futility"]:
        if theta is None or not theta > 0:
            raise ValueError("adaptive.futility: needs an alternative effect > 0 (min_effect)")
        power = float(o["plan"].get("power") or 0.8)
        fut = futility_bounds(*key, round(float(theta), 6), power)
    return {"key": key, "efficacy": efficacy_bounds(*key), "futility": fut}


def decide(statistics_so_far, bounds: dict) -> str:
    """A comparison's status after the looks so far, from its evidence at each (|t| or -t):
    efficacy above a look's efficacy bound, futility below its futility bound, max_looks at
    the last look without efficacy, else continue. The interim analysis and the simulation
    test both decide through here."""
    eff, fut = bounds["efficacy"], bounds["futility"]
    for k, e in enumerate(statistics_so_far):
        if e > eff[k]:
            return "efficacy"
        if k == len(eff) - 1:
            return "max_looks"
        if fut is not None and e < fut[k]:
            return "futility"
    return "continue"


# --- the final analysis, adjusted for the design --------------------------------------------


def stagewise_p(key: tuple, k: int, e: float, bounds: dict | None = None) -> float:
    """Stage-wise ordering p of stopping at look k (0-based) with evidence e, from the null
    studies the bounds came from. Efficacy (or the last look): the null chance of crossing
    an efficacy bound earlier, or of reaching look k with evidence e or more (futility
    ignored, as it is non-binding: conservative). Futility at look k: that stop ranks below
    every study that went on, so p is 1 - the chance of a futility stop before k or at k with
    less evidence."""
    paths = null_paths(key[0], key[2], key[3])
    eff = efficacy_bounds(*key)
    fut = None if bounds is None else bounds["futility"]
    alive = np.ones(len(paths), bool)
    if fut is not None and k < len(eff) - 1 and e < fut[k]:
        below = 0.0
        for j in range(k):
            stop = alive & (paths[:, j] < fut[j])
            below += stop.mean()
            alive &= ~stop & (paths[:, j] <= eff[j])
        return float(1.0 - below - (alive & (paths[:, k] < e)).mean())
    p = 0.0
    for j in range(k):
        cross = alive & (paths[:, j] > eff[j])
        p += cross.mean()
        alive &= ~cross
    return float(p + (alive & (paths[:, k] >= e)).mean())


def final(stat: dict, status: str, k: int, bounds: dict, rule: dict) -> dict:
    """p, repeated confidence interval (estimate +- c_k se, c_k the look's efficacy bound: it
    excludes the null value exactly at efficacy) and verdict of a stopped comparison.
    One-sided rules bound condition - reference from above: a record needs it below
    -min_delta, which is where the shifted statistic crosses c_k."""
    from speedlab.analysis import decision as d

    c, est, se = float(bounds["efficacy"][k]), stat["estimate"], stat["se"]
    two = bounds["key"][3]
    won = status == "efficacy"
    if math.isnan(stat["t"]):
        return {"p_adj": None, "estimate": None, "est_low": None, "est_high": None,
                "est_level": None, "verdict": d.INSUFFICIENT}  # fmt: skip
    if rule["rule"] == "difference":
        verdict = (d.BETTER if est < 0 else d.WORSE) if won else d.NO_DIFFERENCE
    elif rule["rule"] == "record":
        verdict = d.RECORD if won else d.NOT_RECORD
    else:
        verdict = d.BEATS_FRONTIER if won else d.NOT_FRONTIER
    p = stagewise_p(bounds["key"], k, float(evidence(stat["t"], two)), bounds)
    return {
        "p_adj": p,
        "estimate": est,
        "est_low": est - c * se if two else -math.inf,
        "est_high": est + c * se,
        # A repeated CI: the intervals at all looks cover together with 1 - alpha
        # (two-sided; for one-sided rules the one bound covers with 1 - alpha).
        "est_level": 1 - bounds["key"][4],
        "verdict": verdict,
    }


# --- looks of a study -----------------------------------------------------------------------


def seeds_at_look(study: dict, k: int) -> list[int]:
    """The seeds every arm has run by look k (from 1): the study's first looks[k-1] seeds."""
    looks = check_looks(study["adaptive"]["looks"], len(study["seeds"]))
    if not 1 <= k <= len(looks):
        raise ValueError(f"adaptive.looks: there is no look {k} (looks {list(looks)})")
    return list(study["seeds"][: looks[k - 1]])


def next_runs(doc: dict) -> dict[str, list[int]]:
    """{condition: seeds} the next look needs (empty when every comparison stopped)."""
    return {c: list(s) for c, s in (doc.get("next") or {}).items() if s}


def _design(o: dict) -> str:
    """Adaptive studies run every arm on the same seeds, so auto pairs them."""
    if o["design"] not in ("auto", "paired", "independent"):
        raise ValueError(f"design: {o['design']!r} is not auto, paired or independent")
    return "independent" if o["design"] == "independent" else "paired"


def _reference(o: dict) -> str:
    return o["rule"]["against"] if o["rule"]["rule"] == "frontier" else o["baseline"]


def alternative(o: dict, runs, previous: dict) -> dict:
    """The futility bounds' alternative: theta = plan.min_effect (beyond min_delta for a
    record) over the noise sd, which is plan.noise_sd (made the sd of differences with
    plan.pair_correlation when paired) or else pooled from the first look's runs. Fixed at the
    first look and read back from the previous look's document, so every look uses the same
    bounds."""
    none = {"effect_over_sd": None, "noise_sd": None, "noise_source": None}
    if not o["futility"]:
        return none
    if previous and previous.get("effect_over_sd") is not None:
        return {k: previous.get(k) for k in none}
    effect = o["plan"].get("min_effect")
    if effect is None:
        raise ValueError("adaptive.futility: needs plan.min_effect (the effect it plans for)")
    if o["rule"]["rule"] == "record":
        effect -= o["rule"].get("min_delta") or 0.0
    if not effect > 0:
        raise ValueError("plan.min_effect: must be > 0 (and exceed decision.min_delta)")
    sd, source = o["plan"].get("noise_sd"), "plan.noise_sd"
    if sd is not None and _design(o) == "paired":
        sd *= math.sqrt(2 * (1 - (o["plan"].get("pair_correlation") or 0.0)))
    if sd is None:
        sd, source = _pooled_sd(runs, o), "pooled from the first look's runs"
    if not sd > 0:
        raise ValueError(f"plan.noise_sd: the noise sd is {sd} ({source}); futility needs > 0")
    return {"effect_over_sd": effect / sd, "noise_sd": sd, "noise_source": source}


def _pooled_sd(runs, o: dict) -> float:
    """The noise at the first look: the sd of per-seed differences (paired) or of the runs,
    pooled over the comparisons."""
    from speedlab.analysis.decision import pairing

    ref, spreads = _reference(o), []
    for cond in (c for c in o["conditions"] if c != ref):
        x, r, paired = pairing(runs, o["metric"], cond, ref, _design(o))
        spreads += [np.var(x - r, ddof=1)] if paired else [np.var(x, ddof=1), np.var(r, ddof=1)]
    return float(math.sqrt(np.mean(spreads)))


def interim(o: dict, runs, previous: dict | None) -> dict:
    """Look o["look"]'s analysis: each comparison still going is tested on the look's seeds
    and stopped or continued; those stopped at an earlier look keep their decision."""
    looks = check_looks(o["looks"], len(o["seeds"]))
    k = o["look"] - 1
    if not 0 <= k < len(looks):
        raise ValueError(f"adaptive.looks: there is no look {o['look']} (looks {list(looks)})")
    if (previous or {}).get("look", 0) != k:
        raise ValueError(f"adaptive: look {k + 1} needs look {k}'s document as `previous`")
    runs = runs[runs["seed"].isin(o["seeds"][: looks[k]])]
    alt = alternative(o, runs, previous)
    bounds = design_bounds(o, alt["effect_over_sd"])
    ref, comparisons = _reference(o), {}
    earlier = (previous or {}).get("comparisons", {})
    for cond in (c for c in o["conditions"] if c != ref):
        comp = earlier.get(cond) or {"against": ref, "status": "continue", "history": []}
        if comp["status"] == "continue":
            stat = _look(runs, o, cond, ref)
            history = [*comp["history"], _history(k, stat, bounds)]
            status = decide([_number(h["statistic"]) for h in history], bounds)
            comp = {**comp, "status": status, "history": history}
            if status != "continue":
                comp["final"] = final(stat, status, k, bounds, o["rule"])
        comparisons[cond] = comp
    return _doc(o, k, comparisons, bounds, alt)


def _look(runs, o: dict, cond: str, ref: str) -> dict:
    """The comparison's statistic at this look; NaN (it continues, or at the last look ends
    with insufficient data) when diverged runs leave fewer than 2 pairs or runs per arm."""
    from speedlab.analysis.decision import pairing

    try:
        x, r, paired = pairing(runs, o["metric"], cond, ref, _design(o))
    except ValueError:  # paired, with fewer than 2 shared seeds
        x, r, paired = np.array([]), np.array([]), True
    if min(len(x), len(r)) < 2:
        return {"t": math.nan, "estimate": math.nan, "se": math.nan, "n": min(len(x), len(r))}
    return look_statistic(x, r, paired, o["rule"])


def _number(v) -> float:
    return math.nan if v is None else float(v)


def _history(k: int, stat: dict, bounds: dict) -> dict:
    """One look of a comparison: `statistic` is the evidence (|t| two-sided, -t one-sided),
    on the scale of its bounds; `t` the signed statistic."""
    fut, e = bounds["futility"], float(evidence(stat["t"], bounds["key"][3]))
    return {"look": k + 1, "n": stat["n"], "statistic": _finite_or_inf(e),
            "t": _finite_or_inf(stat["t"]), "estimate": _finite_or_inf(stat["estimate"]),
            "se": _finite_or_inf(stat["se"]),
            "efficacy": float(bounds["efficacy"][k]),
            "futility": _finite(None if fut is None else fut[k])}  # fmt: skip


def _finite_or_inf(v: float) -> float | None:
    """JSON has no NaN: an unknown number is null (infinities stay, as Python writes them)."""
    return None if math.isnan(v) else float(v)


def _finite(b) -> float | None:
    return None if b is None or not np.isfinite(b) else float(b)


def _doc(o, k, comparisons, bounds, alt) -> dict:
    going = [c for c, comp in comparisons.items() if comp["status"] == "continue"]
    nxt = {}
    if going and k + 1 < len(o["looks"]):
        new = o["seeds"][o["looks"][k] : o["looks"][k + 1]]
        nxt = {c: list(new) for c in [_reference(o), *going]}
    fut = bounds["futility"]
    return {
        "look": k + 1, "looks": list(o["looks"]), "spending": o["spending"],
        "futility": bool(o["futility"]), "alpha": o["alpha"], "design": _design(o),
        "rule": o["rule"]["rule"], "min_delta": o["rule"].get("min_delta") or 0.0, **alt,
        "efficacy_bounds": [float(b) for b in bounds["efficacy"]],
        "futility_bounds": None if fut is None else [_finite(b) for b in fut],
        "comparisons": comparisons, "next": nxt,
    }  # fmt: skip


def expected_seeds(
    looks, spending, design, rule, futility, effect_over_sd, alpha, power: float = 0.8
) -> dict:
    """Seeds per arm the design takes: the maximum, and the mean under H0 and under the
    alternative (the condition effect_over_sd noise sds better; for a record, beyond
    min_delta), by simulating 4,000 studies each through `decide`. design auto counts as
    paired; with no alternative (None), expected_h1 is NaN."""
    o = {"looks": looks, "spending": spending, "design": design, "alpha": alpha,
         "rule": {"rule": rule} if isinstance(rule, str) else rule, "futility": futility,
         "plan": {"power": power}}  # fmt: skip
    bounds = design_bounds(o, effect_over_sd)
    looks, _, design, two, _ = bounds["key"]
    out = {"max": float(looks[-1]), "expected_h0": math.nan, "expected_h1": math.nan}
    for name, shift in (("expected_h0", 0.0), ("expected_h1", effect_over_sd)):
        if shift is None:
            continue
        e = _paths(looks, design, two, 4000, float(shift), BOUND_SEED + 2)
        out[name] = float(np.mean([looks[stop_look(row, bounds)] for row in e]))
    return out


def stop_look(statistics, bounds: dict) -> int:
    """The look (0-based) at which `decide` stops a comparison with these statistics."""
    for k in range(len(statistics)):
        if decide(statistics[: k + 1], bounds) != "continue":
            return k
    return len(statistics) - 1


STOP_MARKERS = {"efficacy": "*", "futility": "X", "max_looks": "s", "continue": "o"}


def plot(doc: dict, out_png) -> Path:
    """The boundary figure: efficacy and futility bounds per look (seeds per arm), each
    comparison's statistic at its looks, and where it stopped and why (the marker)."""
    import matplotlib.pyplot as plt

    from speedlab.analysis.figures import save_figure, themed_colors

    comps = doc["comparisons"]
    colors = themed_colors(len(comps))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    looks = doc["looks"]
    ax.plot(looks, doc["efficacy_bounds"], "k-", lw=1.5, label="efficacy bound")
    if doc.get("futility_bounds"):
        fb = [np.nan if b is None else b for b in doc["futility_bounds"]]
        ax.plot(looks, fb, "k--", lw=1.2, label="futility bound (non-binding)")
    for (cond, comp), color in zip(comps.items(), colors, strict=True):
        h = comp["history"]
        # At the look's planned seeds, as the bounds are (a diverged run lowers the n used).
        stats, at = [_number(r["statistic"]) for r in h], [looks[r["look"] - 1] for r in h]
        ax.plot(at, stats, "-o", color=color, ms=4)
        ax.plot(at[-1], stats[-1], STOP_MARKERS[comp["status"]], color=color,
                ms=11, label=f"{cond}: {comp['status']} at look {h[-1]['look']}")  # fmt: skip
    ax.set_xticks(looks)
    ax.set_xlabel("seeds per arm at the look")
    ax.set_ylabel(_statistic_label(doc))
    ax.set_ylim(*_ylim(doc))
    name = {"obrien_fleming": "O'Brien-Fleming", "pocock": "Pocock"}.get(doc["spending"])
    ax.set_title(f"Group-sequential {doc['design']} design ({name} spending, α={doc['alpha']:g})")
    ax.legend(fontsize=8, loc="best")
    note = ("a comparison stops for efficacy above the efficacy bound (★) or for futility below "
            "the futility bound (✕); ■ decided at the last look")  # fmt: skip
    return save_figure(fig, out_png, footnote=note)


def _statistic_label(doc: dict) -> str:
    if doc["rule"] == "difference":
        return "|t| of condition − reference"
    shift = f" + {doc['min_delta']:g}" if doc["rule"] == "record" and doc.get("min_delta") else ""
    return f"−t of (condition − reference{shift}): higher is better"


def _ylim(doc: dict) -> tuple[float, float]:
    """O'Brien-Fleming's first bounds at 2 or 3 seeds are huge (t with 1 df): the axis shows
    the statistics and the later bounds, and the first bounds run off the top."""
    stats = [_number(r["statistic"]) for c in doc["comparisons"].values() for r in c["history"]]
    finite = [v for v in stats if np.isfinite(v)]
    later = [b for b in doc["efficacy_bounds"][1:] if np.isfinite(b)]
    top = max([*finite, *later, 1.0]) * 1.15
    lows = [*finite, *[b for b in (doc.get("futility_bounds") or []) if b is not None], 0.0]
    return min(lows) - 0.5, top


def _read_runs(summaries: list[Path], baseline: str, curve_target: dict | None):
    """The runs table of the look's runs, as collect makes it (diverged and NaN runs are
    dropped later by decision.pairing, as in the study's stats)."""
    from speedlab.analysis.collect import collect

    runs, _ = collect([Path(s) for s in summaries], baseline, curve_target=curve_target)
    return runs


OPTIONS = {k: REQUIRED for k in ("study", "baseline", "conditions", "metric", "seeds", "looks",
           "spending", "futility", "alpha", "design", "rule", "plan", "look")}  # fmt: skip
OPTIONS.update(previous=None, curve_target=None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m speedlab.analysis.sequential", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("interim", help="one look's interim analysis")
    add_options(i, OPTIONS, required=True)
    i.add_argument("--summaries", nargs="+", required=True, type=Path)
    i.add_argument("--out", required=True, type=Path)
    f = sub.add_parser("final", help="sequential.json: the look the design stopped at")
    f.add_argument("--doc", required=True, type=Path)
    f.add_argument("--out", required=True, type=Path)
    g = sub.add_parser("plot", help="the boundary figure")
    g.add_argument("--doc", required=True, type=Path)
    g.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    if args.command == "plot":
        plot(json.loads(args.doc.read_text()), args.out)
        return
    if args.command == "final":
        doc = json.loads(args.doc.read_text())
        if next_runs(doc):
            raise SystemExit(f"{args.doc}: look {doc['look']} still asks for {next_runs(doc)}")
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        return
    o = args.options
    previous = json.loads(Path(o["previous"]).read_text()) if o["previous"] else None
    try:
        runs = _read_runs(args.summaries, o["baseline"], o["curve_target"])
        doc = interim(o, runs, previous)
    except ValueError as e:
        raise SystemExit(f"speedlab.analysis.sequential: studies.{o['study']}.{e}") from None
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    for cond, comp in doc["comparisons"].items():
        print(f"look {doc['look']}: {cond} vs {comp['against']}: {comp['status']}")


if __name__ == "__main__":
    main()
