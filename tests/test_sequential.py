"""Group-sequential designs (speedlab.analysis.sequential): the spending functions, the type I
error of 10,000 simulated null studies per design through the same `decide` as the interim
analyses, the design-adjusted final analysis, and the interim CLI on real run files."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from speedlab.analysis import sequential as sq

LOOKS = (2, 4, 7, 10)
ALPHA = 0.05
STUDIES = 10_000
DIFF = {"rule": "difference", "alpha": ALPHA, "min_delta": 0.0, "against": None}


def test_spending_functions_match_their_formulas():
    t = np.array([0.2, 0.4, 0.7, 1.0])
    obf = 2 - 2 * sps.norm.cdf(sps.norm.ppf(1 - ALPHA / 2) / np.sqrt(t))
    assert np.allclose(sq.spent(t, ALPHA, "obrien_fleming"), obf, rtol=1e-12)
    assert np.allclose(sq.spent(t, ALPHA, "pocock"), ALPHA * np.log(1 + (math.e - 1) * t))
    for name in ("obrien_fleming", "pocock"):
        assert sq.spent(1.0, ALPHA, name) == pytest.approx(ALPHA)
    with pytest.raises(ValueError, match="adaptive.spending"):
        sq.spent(t, ALPHA, "haybittle")


def simulate(design: str, spending: str, futility: bool, shift: float, seed: int) -> float:
    """Share of simulated studies that end in efficacy, each look's statistic computed by
    look_statistic and judged by decide, as the interim analysis does."""
    rng = np.random.default_rng(seed)
    bounds = {"looks": LOOKS, "spending": spending, "futility": futility, "alpha": ALPHA,
              "design": design, "rule": DIFF, "plan": {"power": 0.8}}  # fmt: skip
    b = sq.design_bounds(bounds, 1.0 if futility else None)
    x = rng.standard_normal((STUDIES, LOOKS[-1])) - shift
    y = rng.standard_normal((STUDIES, LOOKS[-1]))
    paired = design == "paired"
    hits = 0
    for xs, ys in zip(x, y, strict=True):
        for k, n in enumerate(LOOKS):
            ref = np.zeros(n) if paired else ys[:n]
            stat = sq.look_statistic(xs[:n], ref, paired, DIFF)
            status = sq.decide(abs(stat["t"]), k, b["efficacy"], b["futility"])
            if status != "continue":
                hits += status == "efficacy"
                break
    return hits / STUDIES


@pytest.mark.parametrize("design", ["paired", "independent"])
@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_type_one_error_holds_at_small_n(design, spending):
    rate = simulate(design, spending, False, 0.0, seed=11)
    mc = 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES)
    print(f"{design} {spending}: type I error {rate:.4f} (alpha {ALPHA}, +-{mc:.4f})")
    assert ALPHA / 2 < rate <= ALPHA + mc
    # Non-binding futility can only lower it.
    assert simulate(design, spending, True, 0.0, seed=12) <= ALPHA + mc


def test_power_against_the_fixed_design_at_the_same_max_n():
    rng = np.random.default_rng(5)
    d = rng.standard_normal((STUDIES, LOOKS[-1])) - 1.0
    fixed = np.mean(sps.ttest_1samp(d, 0, axis=1).pvalue < ALPHA)
    for spending in ("obrien_fleming", "pocock"):
        power = simulate("paired", spending, False, 1.0, seed=13)
        print(f"paired, 1 sd: {spending} power {power:.3f}, fixed n=10 {fixed:.3f}")
        assert 0.6 < power <= fixed + 0.02


def test_final_analysis_agrees_with_its_decision():
    o = {"looks": LOOKS, "spending": "obrien_fleming", "futility": False, "alpha": ALPHA,
         "design": "paired", "rule": DIFF, "plan": {}}  # fmt: skip
    b = sq.design_bounds(o, None)
    for t_obs, k in ((4.0, 2), (1.0, 3), (-6.0, 2)):
        stat = {"t": t_obs, "estimate": t_obs * 0.01, "se": 0.01, "n": LOOKS[k]}
        status = sq.decide(abs(t_obs), k, b["efficacy"], None)
        out = sq.final(stat, status, k, b, DIFF)
        excludes = out["est_low"] > 0 or out["est_high"] < 0
        assert excludes == (status == "efficacy")
        assert (out["p_adj"] < ALPHA) == (status == "efficacy")


def fake_run(root, condition, seed, value):
    run = root / condition / f"seed{seed}"
    run.mkdir(parents=True)
    summary = {"study": "s", "condition": condition, "seed": seed, "steps": 10,
               "train_time_s": 1.0, "diverged": False, "val_loss": value}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "roundtrip.json").write_text(json.dumps({"q_val_loss": value}))
    prov = {"world_size": 1, "device": "cpu", "config": {"train": {"steps": 10}}}
    (run / "provenance.json").write_text(json.dumps(prov))
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 10, "tokens": 100, "time_s": 1.0, "val_loss": value}) + "\n"
    )
    return run / "summary.json"


def test_interim_cli_stops_a_clear_effect_and_continues_the_rest(tmp_path):
    rng = np.random.default_rng(0)
    seeds = list(range(10))
    summaries = []
    for s in seeds[:4]:
        base = 3.0 + rng.normal(0, 0.01)
        summaries.append(fake_run(tmp_path, "base", s, base))
        summaries.append(fake_run(tmp_path, "clear", s, base - 0.2 + rng.normal(0, 0.001)))
        summaries.append(fake_run(tmp_path, "none", s, base + rng.normal(0, 0.01)))
    options = {"study": "s", "baseline": "base", "conditions": ["base", "clear", "none"],
               "metric": "val_loss", "seeds": seeds, "looks": list(LOOKS),
               "spending": "pocock", "futility": False, "alpha": ALPHA, "design": "auto",
               "plan": {}, "rule": DIFF, "look": 2, "previous": None}  # fmt: skip
    out = tmp_path / "look2.json"
    sq.main(["interim", "--options", json.dumps(options), "--summaries",
             *map(str, summaries), "--out", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["comparisons"]["clear"]["status"] == "efficacy"
    assert doc["comparisons"]["clear"]["final"]["verdict"] == "better"
    assert doc["comparisons"]["none"]["status"] == "continue"
    assert sq.next_runs(doc) == {"base": [4, 5, 6], "none": [4, 5, 6]}
    fig = tmp_path / "seq.png"
    sq.main(["plot", "--doc", str(out), "--out", str(fig)])
    assert fig.stat().st_size > 1000


def test_bad_designs_are_refused():
    study = {"seeds": [0, 1, 2], "adaptive": {"looks": [2, 4]}}
    with pytest.raises(ValueError, match="last look needs 4"):
        sq.seeds_at_look(study, 1)
    with pytest.raises(ValueError, match="no sequential design"):
        sq.two_sided({"rule": "equivalence"})
    o = {"futility": True, "plan": {}, "rule": DIFF}
    with pytest.raises(ValueError, match="min_effect"):
        sq.alternative(o, None, {})
