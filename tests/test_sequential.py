"""Group-sequential designs (speedlab.analysis.sequential): the spending functions, the type I
error and power of 10,000 simulated studies per design through the same `look_statistic` and
`decide` as the interim analyses, the design-adjusted final analysis, and the interim CLI on run
files as training writes them."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from speedlab.analysis import sequential as sq

ALPHA = 0.05
STUDIES = 10_000
MC = 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES)  # 3 Monte-Carlo standard errors
LOOK_SETS = [(3, 5, 8, 12), (2, 4, 7, 10)]
DIFF = {"rule": "difference", "alpha": ALPHA, "min_delta": 0.0, "against": None}
RECORD = {"rule": "record", "alpha": ALPHA, "min_delta": 0.005, "against": None}
SEED = 7  # the simulated studies' seed: not the one the bounds were computed with
assert SEED != sq.BOUND_SEED


def design(looks, spending, kind, rule=DIFF, futility=False, **extra):
    return {"looks": list(looks), "spending": spending, "futility": futility, "alpha": ALPHA,
            "design": kind, "rule": rule, "plan": {"power": 0.8}, **extra}  # fmt: skip


def simulate(o: dict, shift: float, theta: float | None = None, seed: int = SEED):
    """(share of studies ending in efficacy, mean seeds per arm): the data of all studies drawn
    at once (the condition `shift` sd lower), each look's statistic by look_statistic, each
    study judged by decide on its statistics so far, as the interim analysis does."""
    bounds = sq.design_bounds(o, theta)
    looks, paired = bounds["key"][0], bounds["key"][2] == "paired"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((STUDIES, looks[-1])) - shift
    ref = np.zeros_like(x) if paired else rng.standard_normal(x.shape)
    t = [sq.look_statistic(x[:, :n], ref[:, :n], paired, o["rule"])["t"] for n in looks]
    e = sq.evidence(np.stack(t, axis=1), bounds["key"][3])
    hits, seeds = 0, 0
    for row in e:
        k = sq.stop_look(row, bounds)
        hits += sq.decide(row[: k + 1], bounds) == "efficacy"
        seeds += looks[k]
    return hits / STUDIES, seeds / STUDIES


def fixed_power(looks, kind: str, shift: float, seed: int = SEED) -> float:
    """The fixed design at the sequential design's maximum n: paired t or Welch t (scipy)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((STUDIES, looks[-1])) - shift
    if kind == "paired":
        p = sps.ttest_1samp(x, 0.0, axis=1).pvalue
    else:
        p = sps.ttest_ind(x, rng.standard_normal(x.shape), axis=1, equal_var=False).pvalue
    return float(np.mean(p < ALPHA))


@pytest.mark.parametrize("looks", LOOK_SETS, ids=str)
@pytest.mark.parametrize("kind", ["paired", "independent"])
@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_type_one_error_and_power_hold_at_small_n(looks, kind, spending):
    o = design(looks, spending, kind)
    rate, n_h0 = simulate(o, 0.0)
    assert ALPHA / 2 < rate <= ALPHA + MC
    # Non-binding futility (planned for a 1 sd effect) can only lower the type I error.
    o_fut = design(looks, spending, kind, futility=True)
    rate_fut, n_h0_fut = simulate(o_fut, 0.0, theta=1.0, seed=SEED + 1)
    assert rate_fut <= ALPHA + MC and n_h0_fut < n_h0
    power, n_h1 = simulate(o, 1.0, seed=SEED + 2)
    power_fut, _ = simulate(o_fut, 1.0, theta=1.0, seed=SEED + 2)
    fixed = fixed_power(looks, kind, 1.0, seed=SEED + 2)
    print(
        f"\n{kind} {spending} looks {list(looks)}: type I {rate:.4f} (futility {rate_fut:.4f});"
        f" power at 1 sd {power:.3f} (futility {power_fut:.3f}), fixed n={looks[-1]} "
        f"{fixed:.3f}; mean seeds H0 {n_h0:.2f} (futility {n_h0_fut:.2f}), H1 {n_h1:.2f}"
    )
    # Spending alpha over the looks costs power against the fixed design: little for
    # O'Brien-Fleming, up to a sixth for Pocock, whose early alpha is spent at 2 or 3 seeds
    # where the t bound is huge.
    assert 0.75 * fixed < power <= fixed + MC
    assert power_fut <= power + MC and n_h1 < looks[-1]


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_one_sided_record_holds_at_its_null_min_delta(spending):
    """A record's null is an improvement of exactly min_delta: the statistic shifted by
    min_delta keeps the one-sided type I error at alpha (unit-sd data, so min_delta 0.5 is
    half the noise sd)."""
    o = design((2, 4, 7, 10), spending, "paired", rule={**RECORD, "min_delta": 0.5})
    rate, _ = simulate(o, 0.5, seed=SEED + 3)
    print(f"\nrecord paired {spending}: one-sided type I error {rate:.4f}")
    assert ALPHA / 2 < rate <= ALPHA + MC


def test_spending_functions_match_their_formulas():
    t = np.array([0.2, 0.4, 0.7, 1.0])
    obf = 2 - 2 * sps.norm.cdf(sps.norm.ppf(1 - ALPHA / 2) / np.sqrt(t))
    assert np.allclose(sq.spent(t, ALPHA, "obrien_fleming"), obf, rtol=1e-12, atol=0)
    pocock = ALPHA * np.log(1 + (math.e - 1) * t)
    assert np.allclose(sq.spent(t, ALPHA, "pocock"), pocock, rtol=1e-12, atol=0)
    # By hand at t = 1/2: 2 - 2 Phi(1.959964 / 0.707107) = 2 - 2 Phi(2.771808) = 0.005575;
    # 0.05 ln(1 + 1.718282 / 2) = 0.05 ln(1.859141) = 0.031006.
    assert sq.spent(0.5, ALPHA, "obrien_fleming") == pytest.approx(0.005575, abs=1e-6)
    assert sq.spent(0.5, ALPHA, "pocock") == pytest.approx(0.031006, abs=1e-6)
    for name in ("obrien_fleming", "pocock"):
        assert sq.spent(1.0, ALPHA, name) == pytest.approx(ALPHA, rel=1e-12)
        assert sq.spent(1.0, 0.01, name) == pytest.approx(0.01, rel=1e-12)  # one-sided alpha


def test_first_bound_is_the_t_quantile_of_the_alpha_spent_there():
    """At the first look nothing has stopped yet: the paired bound is the t quantile (n-1 df)
    of the alpha spent at t_1, up to the simulation's error."""
    looks = (3, 5, 8, 12)
    first = sq.spent(looks[0] / looks[-1], ALPHA, "pocock")
    two = sq.efficacy_bounds(looks, "pocock", "paired", True, ALPHA)[0]
    assert two == pytest.approx(sps.t.ppf(1 - first / 2, looks[0] - 1), rel=0.03)
    one = sq.efficacy_bounds(looks, "pocock", "paired", False, ALPHA)[0]
    assert one == pytest.approx(sps.t.ppf(1 - first, looks[0] - 1), rel=0.03)
    b = sq.design_bounds(design(looks, "pocock", "paired", futility=True), 1.0)
    assert np.all(b["futility"] <= b["efficacy"]) and b["futility"][-1] == -np.inf


def test_stagewise_p_at_the_first_look_is_the_t_tail():
    looks = (3, 5, 8, 12)
    b = sq.design_bounds(design(looks, "pocock", "paired"), None)
    for e in (2.0, 4.3, 9.0):
        exact = 2 * sps.t.sf(e, looks[0] - 1)
        assert sq.stagewise_p(b["key"], 0, e) == pytest.approx(exact, abs=3e-3)


@pytest.mark.parametrize("rule", [DIFF, RECORD], ids=["difference", "record"])
@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_final_p_and_interval_agree_with_the_decision(rule, spending):
    o = design((2, 4, 7, 10), spending, "paired", rule=rule, futility=True)
    b = sq.design_bounds(o, 1.0)
    null = -rule["min_delta"]  # the value of condition - reference the rule tests against
    se = 0.002
    for k in range(4):
        for t in (-12.0, -5.0, -3.0, -2.5, -1.0, 0.2, 2.6, 6.0):
            stat = {"t": t, "se": se, "n": o["looks"][k], "estimate": t * se + null}
            e = float(sq.evidence(t, b["key"][3]))
            status = sq.decide([*[b["efficacy"][j] * 0.99 for j in range(k)], e], b)
            if status == "continue":
                continue
            out = sq.final(stat, status, k, b, rule)
            excludes = out["est_low"] > null or out["est_high"] < null
            assert excludes == (status == "efficacy"), (k, t, status, out)
            assert (out["p_adj"] < ALPHA) == (status == "efficacy"), (k, t, status, out)
            assert 0 <= out["p_adj"] <= 1
            won = {"difference": ("better", "worse"), "record": ("record", "record")}
            lost = {"difference": "no detectable difference", "record": "not a record"}
            expect = won[rule["rule"]][t > 0] if status == "efficacy" else lost[rule["rule"]]
            assert out["verdict"] == expect


def fake_run(root, condition, seed, value, diverged=False):
    """A run directory as training and the roundtrip write it (what collect reads)."""
    run = root / condition / f"seed{seed}"
    run.mkdir(parents=True)
    summary = {"study": "s", "condition": condition, "seed": seed, "steps": 10,
               "train_time_s": 1.0, "diverged": diverged, "val_loss": value,
               "val_bpb": value / 2}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "roundtrip.json").write_text(json.dumps({"q_val_loss": value, "q_val_bpb": value}))
    prov = {"world_size": 1, "device": "cpu", "host": "h", "config": {"train": {"steps": 10}}}
    (run / "provenance.json").write_text(json.dumps(prov))
    line = {"step": 10, "tokens": 100, "time_s": 1.0, "val_loss": value, "val_bpb": value / 2}
    (run / "metrics.jsonl").write_text(json.dumps(line) + "\n")
    return run / "summary.json"


SEEDS = list(range(100, 110))
NOISE = {"base": 0.0, "clear": -0.05, "some": -0.02, "null": 0.0, "worse": 0.04}
ALL = list(NOISE)


def make_runs(root, seeds, conditions):
    rng = np.random.default_rng(sum(seeds))
    out = []
    for s in seeds:
        base = 3.0 + rng.normal(0, 0.01)
        for c in conditions:
            value = base + NOISE[c] + (0 if c == "base" else rng.normal(0, 0.01))
            out.append(fake_run(root, c, s, value, diverged=(c == "some" and s == 101)))
    return out


def interim(tmp_path, look, summaries, previous=None, **options):
    o = {"study": "s", "baseline": "base", "conditions": ALL,
         "metric": "val_loss", "seeds": SEEDS, "looks": [2, 4, 7, 10], "spending": "pocock",
         "futility": True, "alpha": ALPHA, "design": "auto", "rule": DIFF,
         "plan": {"min_effect": 0.02, "noise_sd": 0.01, "power": 0.8}, "look": look,
         "previous": None if previous is None else str(previous), **options}  # fmt: skip
    out = tmp_path / f"look{look}.json"
    sq.main(["interim", "--options", json.dumps(o), "--summaries", *map(str, summaries),
             "--out", str(out)])  # fmt: skip
    return out, json.loads(out.read_text())


def test_interim_cli_stops_continues_and_asks_for_the_next_seeds(tmp_path):
    runs = make_runs(tmp_path, SEEDS[:2], ALL)
    path1, doc1 = interim(tmp_path, 1, runs)
    assert doc1["look"] == 1 and doc1["design"] == "paired"
    assert doc1["effect_over_sd"] == pytest.approx(0.02 / (0.01 * math.sqrt(2)))
    assert doc1["noise_source"] == "plan.noise_sd"
    # n = 2: only the null condition stops (futility, below its non-binding bound).
    null = doc1["comparisons"]["null"]
    assert (
        null["status"] == "futility"
        and null["history"][0]["statistic"] < null["history"][0]["futility"]
    )
    assert null["final"]["verdict"] == "no detectable difference" and null["final"]["p_adj"] > ALPHA
    going = ["base", "clear", "some", "worse"]
    assert sq.next_runs(doc1) == {c: [102, 103] for c in going}

    runs += make_runs(tmp_path, SEEDS[2:4], going)
    path2, doc2 = interim(tmp_path, 2, runs, previous=path1)
    comps = doc2["comparisons"]
    assert comps["clear"]["status"] == "efficacy"
    assert comps["clear"]["final"]["verdict"] == "better"
    assert comps["clear"]["final"]["est_high"] < 0 and comps["clear"]["final"]["p_adj"] < ALPHA
    assert comps["worse"]["status"] == "efficacy"
    assert comps["worse"]["final"]["verdict"] == "worse"
    assert comps["some"]["status"] == "continue"
    # The statistic is scipy's paired t on the look's values; the diverged seed 101 is out.
    values = {c: {} for c in NOISE}
    for p in runs:
        s = json.loads(p.read_text())
        if not s["diverged"]:
            values[s["condition"]][s["seed"]] = s["val_loss"]
    common = sorted(set(values["some"]) & set(values["base"]))
    expected = sps.ttest_rel([values["some"][s] for s in common],
                             [values["base"][s] for s in common]).statistic  # fmt: skip
    last = comps["some"]["history"][-1]
    assert last["n"] == 3 and last["t"] == pytest.approx(expected, rel=1e-12)
    assert [h["look"] for h in comps["some"]["history"]] == [1, 2]
    assert sq.next_runs(doc2) == {"base": [104, 105, 106], "some": [104, 105, 106]}

    # Look 3 gets runs only for the comparison still going: the stopped ones keep their status
    # and their history, and are not analysed again.
    runs += make_runs(tmp_path, SEEDS[4:7], ["base", "some"])
    _, doc3 = interim(tmp_path, 3, runs, previous=path2)
    assert doc3["comparisons"]["clear"] == comps["clear"]
    assert doc3["comparisons"]["null"] == doc1["comparisons"]["null"]
    assert len(doc3["comparisons"]["some"]["history"]) == 3
    assert doc3["effect_over_sd"] == doc1["effect_over_sd"]

    fig = tmp_path / "figures" / "sequential.png"
    sq.main(["plot", "--doc", str(tmp_path / "look3.json"), "--out", str(fig)])
    assert fig.stat().st_size > 1000 and fig.with_suffix(".pdf").exists()
    first = fig.read_bytes()
    sq.main(["plot", "--doc", str(tmp_path / "look3.json"), "--out", str(fig)])
    assert fig.read_bytes() == first  # deterministic


def test_futility_pools_the_noise_at_the_first_look_without_noise_sd(tmp_path):
    conditions = ["base", "clear", "worse"]
    runs = make_runs(tmp_path, SEEDS[:2], conditions)
    _, doc = interim(tmp_path, 1, runs, conditions=conditions,
                     plan={"min_effect": 0.02, "power": 0.8})  # fmt: skip
    vals = {}
    for p in runs:
        s = json.loads(p.read_text())
        vals.setdefault(s["condition"], []).append(s["val_loss"])
    base = np.array(vals["base"])
    var = [np.var(np.array(vals[c]) - base, ddof=1) for c in ("clear", "worse")]
    assert doc["noise_source"] == "pooled from the first look's runs"
    assert doc["noise_sd"] == pytest.approx(math.sqrt(np.mean(var)), rel=1e-12)
    assert doc["effect_over_sd"] == pytest.approx(0.02 / doc["noise_sd"], rel=1e-12)


def test_expected_seeds_for_the_plan():
    kw = {"looks": (2, 4, 7, 10), "spending": "obrien_fleming", "design": "paired",
          "rule": DIFF, "alpha": ALPHA}  # fmt: skip
    plain = sq.expected_seeds(**kw, futility=False, effect_over_sd=1.0)
    fut = sq.expected_seeds(**kw, futility=True, effect_over_sd=1.0)
    assert plain["max"] == fut["max"] == 10
    assert fut["expected_h0"] < plain["expected_h0"] <= 10
    assert 4 <= plain["expected_h1"] < plain["expected_h0"]
    assert math.isnan(sq.expected_seeds(**kw, futility=False, effect_over_sd=None)["expected_h1"])


def test_bad_designs_are_refused(tmp_path):
    study = {"seeds": [0, 1, 2], "adaptive": {"looks": [2, 4]}}
    with pytest.raises(ValueError, match=r"adaptive.looks: the last look needs 4"):
        sq.seeds_at_look(study, 1)
    assert sq.seeds_at_look({"seeds": [5, 6, 7, 8], "adaptive": {"looks": [2, 4]}}, 1) == [5, 6]
    for looks in ([4, 3, 8], [2, 2, 5], [1, 3], [5], [2.5, 4]):
        with pytest.raises(ValueError, match=r"adaptive.looks: .* (increase|seed counts)"):
            sq.check_looks(looks)
    with pytest.raises(ValueError, match="no sequential design"):
        sq.two_sided({"rule": "equivalence"})
    with pytest.raises(ValueError, match="adaptive.spending"):
        sq.spent(0.5, ALPHA, "haybittle")
    o = {"futility": True, "plan": {}, "rule": DIFF, "design": "paired"}
    with pytest.raises(ValueError, match="plan.min_effect"):
        sq.alternative(o, None, {})
    runs = make_runs(tmp_path, SEEDS[:2], ["base", "some"])
    cases = [({"rule": {**DIFF, "rule": "target", "target": 3.0}}, "adaptive: the target rule"),
             ({"plan": {"min_effect": None}}, "adaptive.futility: needs plan.min_effect"),
             ({"looks": [2, 4, 7, 12]}, "adaptive.looks: the last look needs 12"),
             ({"look": 2}, "adaptive: look 2 needs look 1")]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(SystemExit, match=f"studies.s.{message}"):
            interim(tmp_path, extra.pop("look", 1), runs, conditions=["base", "some"], **extra)
