import itertools
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from speedlab.analysis import figures
from speedlab.analysis.figure_list import FIGURES, FINAL_METRICS, PLOTTED, report_figures
from speedlab.analysis.figures import plot_curves, plot_final

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic(n_seeds=3):
    rng = np.random.default_rng(0)
    curves, runs = [], []
    for cond, shift in (("uniform", 0.0), ("layerwise", -0.03)):
        for seed in range(n_seeds):
            for step in range(0, 201, 25):
                value = 4.0 * np.exp(-step / 80) + 2.5 + shift + rng.normal(0, 0.01)
                curves.append(
                    dict(
                        condition=cond,
                        seed=seed,
                        step=step,
                        tokens=step * 2048,
                        time_s=step * 0.2,
                        metric="val_bpb",
                        value=value,
                    )
                )
            runs.append(dict(condition=cond, seed=seed, q_val_bpb=value + 0.001, diverged=False))
    return pd.DataFrame(curves), pd.DataFrame(runs)


def test_figures_are_written_as_real_pngs_and_pdfs(tmp_path):
    curves, runs = synthetic()
    a = plot_curves(
        curves, tmp_path / "curves.png", conditions=["uniform", "layerwise"], baseline="uniform"
    )
    b = plot_final(
        runs, tmp_path / "final.png", conditions=["uniform", "layerwise"], baseline="uniform"
    )
    for path in (a, b):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000
        pdf = path.with_suffix(".pdf").read_bytes()  # the same figure for papers
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "curves.pdf",
        "curves.png",
        "final.pdf",
        "final.png",
    ]  # no temporary files left behind


def test_curves_against_time_and_a_single_seed(tmp_path):
    curves, runs = synthetic(n_seeds=1)
    assert plot_curves(curves, tmp_path / "t.png", x="time_s").stat().st_size > 10_000
    assert plot_final(runs, tmp_path / "f.png").stat().st_size > 10_000


def test_pngs_decode_at_the_intended_resolution(tmp_path):
    import matplotlib.image

    curves, runs = synthetic()
    # A diverged seed with a NaN metric must be left out, not crash the interval.
    runs.loc[0, ["q_val_bpb", "diverged"]] = [float("nan"), True]
    path = plot_final(runs, tmp_path / "final.png", baseline="uniform")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] == 5 * 150  # 5 in tall at dpi 150
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_cli_draws_a_listed_figure(tmp_path):
    import json

    from speedlab.analysis.figures import main

    curves, runs = synthetic()
    curves.to_parquet(tmp_path / "curves.parquet")
    runs.to_parquet(tmp_path / "runs.parquet")
    out_c, out_f = tmp_path / "figs/curves.png", tmp_path / "figs/final.png"
    options = {"conditions": ["uniform", "layerwise"], "baseline": "uniform"}
    for name, table, out in (
        ("val_bpb_vs_step", "curves", out_c),
        ("final_q_val_bpb", "runs", out_f),
    ):
        opts = json.dumps({**options, "figure": name})
        main(["--options", opts, "--table", str(tmp_path / f"{table}.parquet"), "--out", str(out)])
    assert out_c.read_bytes().startswith(PNG_MAGIC) and out_f.read_bytes().startswith(PNG_MAGIC)


def test_quantization_cost_figure(tmp_path):
    from speedlab.analysis.figures import plot_quant_gap

    runs = pd.DataFrame(
        {
            "condition": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "val_bpb": [2.50, 2.52, 2.48, 2.49],
            "q_val_bpb": [2.51, 2.53, 2.50, 2.51],
            "diverged": [False, False, False, True],
        }
    )
    out = plot_quant_gap(runs, tmp_path / "q.png", conditions=["a", "b"], baseline="a")
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000


def test_momentum_per_layer_comes_from_each_conditions_config(tmp_path):
    from speedlab.analysis.figures import condition_momenta, plot_momentum

    def run(cond, schedule, first=0.95, last=0.95, values=None):
        return {
            "condition": cond,
            "cfg.optim.momentum_schedule": schedule,
            "cfg.model.n_layer": 4,
            "cfg.optim.momentum": 0.95,
            "cfg.optim.momentum_first": first,
            "cfg.optim.momentum_last": last,
            "cfg.optim.momentum_list": values,
        }

    runs = pd.DataFrame(
        [
            run("uniform", "uniform"),
            run("moderate", "linear", 0.98, 0.90),
            run("listed", "list", values=[0.9, 0.91, 0.92, 0.93]),
            {"condition": "imported"},  # a run from another tool: no schedule known
        ]
    )
    m = condition_momenta(runs)
    assert m["uniform"] == [0.95] * 4 and m["listed"] == [0.9, 0.91, 0.92, 0.93]
    assert m["moderate"] == pytest.approx([0.98, 0.98 - 0.08 / 3, 0.98 - 0.16 / 3, 0.90])
    assert "imported" not in m
    out = plot_momentum(runs, tmp_path / "m.png", baseline="uniform")
    assert out.read_bytes().startswith(PNG_MAGIC) and out.with_suffix(".pdf").exists()


# --- issue 13: matched seeds, determinism, colours, widths, legends --------------------------


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open (save_figure closes them) to inspect."""
    close, figs = matplotlib.pyplot.close, []
    monkeypatch.setattr(figures.plt, "close", figs.append)
    yield figs
    for fig in figs:
        close(fig)


def matched_runs():
    """Three conditions on seeds 1..3; "worse" is 0.024 higher on every seed, "mixed" differs by
    -0.01, +0.01, +0.03; "worse" has a diverged seed 4 and "mixed" also ran seed 5 alone."""
    base = {1: 1.20, 2: 1.25, 3: 1.30}
    rows = [("baseline", s, v) for s, v in base.items()]
    rows += [("worse", s, v + 0.024) for s, v in base.items()]
    shifts = dict(zip(base, (-0.01, 0.01, 0.03), strict=True))
    rows += [("mixed", s, v + shifts[s]) for s, v in base.items()]
    runs = pd.DataFrame(rows, columns=["condition", "seed", "q_val_bpb"]).assign(diverged=False)
    extra = pd.DataFrame(
        {"condition": ["worse", "mixed"], "seed": [4, 5], "q_val_bpb": [9.9, 1.5]}
    ).assign(diverged=[True, False])
    return pd.concat([runs, extra], ignore_index=True)


ORDER = ["baseline", "worse", "mixed"]


def test_seed_table_and_deltas_pair_on_the_seeds_both_conditions_have():
    table = figures.seed_table(matched_runs(), "q_val_bpb", ORDER)
    assert list(table.columns) == ORDER and list(table.index) == [1, 2, 3, 5]
    assert np.isnan(table.loc[5, "baseline"]) and table.loc[5, "mixed"] == 1.5
    deltas = figures.seed_deltas(table, "baseline")
    assert list(deltas) == ["worse", "mixed"]
    assert list(deltas["worse"].index) == [1, 2, 3]  # diverged seed 4 and unmatched 5 left out
    np.testing.assert_allclose(deltas["worse"], [0.024] * 3, atol=1e-12)
    np.testing.assert_allclose(deltas["mixed"], [-0.01, 0.01, 0.03], atol=1e-12)


def test_paired_figure_joins_seeds_and_shows_each_mean_difference(tmp_path, drawn):
    out = figures.plot_paired(matched_runs(), tmp_path / "p.png", conditions=ORDER[::-1],
                              baseline="baseline")  # fmt: skip
    assert out.read_bytes().startswith(PNG_MAGIC) and out.with_suffix(".pdf").exists()
    left, right = drawn[0].axes
    # Baseline first, then the study's order; one line per seed across the three conditions.
    assert [t.get_text() for t in left.get_xticklabels()] == ["baseline", "mixed", "worse"]
    seed_lines = [line for line in left.get_lines() if len(line.get_xdata()) == 3]
    assert len(seed_lines) == 4
    np.testing.assert_allclose(seed_lines[0].get_ydata(), [1.20, 1.19, 1.224])
    # Right: the mean difference of each condition as a bar, with its sign count.
    bars = [c.get_segments()[0][0][1] for c in right.collections if hasattr(c, "get_segments")]
    np.testing.assert_allclose(sorted(bars), [0.01, 0.024], atol=1e-12)
    texts = {t.get_text() for t in right.texts}
    assert {"mean +0.0100\n1/3 seeds lower", "mean +0.0240\n0/3 seeds lower"} <= texts
    assert any(line.get_ydata()[0] == 0 for line in right.get_lines())  # the zero line


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (matched_runs().assign(seed=lambda r: r["seed"] + 10 * (r["condition"] != "baseline")),
         "no seed shared with\nthe baseline (baseline)"),
        (matched_runs().query("condition == 'baseline'"), "one condition"),
    ],
)  # fmt: skip
def test_paired_figure_says_when_there_is_nothing_to_pair(tmp_path, drawn, runs, message):
    conditions = runs["condition"].unique().tolist()
    figures.plot_paired(runs, tmp_path / "p.png", conditions=conditions, baseline="baseline")
    right = drawn[0].axes[1]
    assert any(message in t.get_text() for t in right.texts), [t.get_text() for t in right.texts]


def test_a_seed_run_twice_for_one_condition_is_refused():
    runs = pd.concat([matched_runs(), matched_runs().iloc[[0]]])
    with pytest.raises(ValueError, match=r"more than one run per \(condition, seed\)"):
        figures.seed_table(runs, "q_val_bpb", ORDER)


def test_censored_runs_are_marked_as_lower_bounds(tmp_path, drawn):
    runs = matched_runs().rename(columns={"q_val_bpb": "steps_to_target"})
    runs["steps_to_target"] *= 1000
    runs["target_censored"] = runs["seed"] == 3
    figures.plot_paired(runs, tmp_path / "p.png", metric="steps_to_target", baseline="baseline")
    figures.plot_final(runs, tmp_path / "f.png", metric="steps_to_target", baseline="baseline")
    for fig in drawn:
        assert any("never reached the target" in t.get_text() for t in fig.texts)
        hollow = [c for ax in fig.axes for c in ax.collections
                  if hasattr(c, "get_facecolors") and len(c.get_offsets())
                  and len(c.get_facecolors()) == 0]  # fmt: skip
        assert hollow  # the censored seed is drawn hollow


def every_kind_table():
    """A runs and a curves table every plotted figure kind can draw from."""
    curves, runs = synthetic()
    runs = runs.assign(val_bpb=runs["q_val_bpb"] - 0.004)
    for key, value in (("momentum_schedule", "uniform"), ("n_layer", 4), ("momentum", 0.95),
                       ("momentum_first", 0.95), ("momentum_last", 0.95)):  # fmt: skip
        section = "model" if key == "n_layer" else "optim"
        runs[f"cfg.{section}.{key}"] = value
    runs["cfg.optim.momentum_list"] = None
    return {"runs": runs, "curves": curves}


def test_every_figure_kind_is_byte_identical_on_rebuild(tmp_path):
    tables = every_kind_table()
    kinds = {}
    for name, spec in PLOTTED.items():
        if spec.kind not in kinds and (spec.metric in (None, "q_val_bpb", "val_bpb")):
            kinds[spec.kind] = name
    assert set(kinds) == {"curves", "final", "paired", "quant", "momentum"}
    for name in kinds.values():
        builds = []
        for k, seed in enumerate((1, 2)):
            np.random.seed(seed)  # a jitter from numpy's global generator would differ
            out = tmp_path / f"build{k}" / f"{name}.png"
            table = tables[PLOTTED[name].table]
            figures.plot_figure(name, table, out, ["uniform", "layerwise"], "uniform")
            builds.append((out.read_bytes(), out.with_suffix(".pdf").read_bytes()))
        assert builds[0] == builds[1], name
        png, pdf = builds[0]
        assert b"CreationDate" not in pdf and b"Matplotlib" not in pdf, name
        assert b"Matplotlib" not in png, name  # no software version in the PNG text chunks


def min_distance(colors) -> float:
    rgb = np.array([c[:3] for c in colors])
    return min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2))


def test_twelve_conditions_get_twelve_distinguishable_colours():
    # 0.15 in RGB (0..1) is about the step between tab10's closest pair; past 12 the light
    # partners of tab20 come closer to each other, but no two coincide.
    for n, least in ((2, 0.15), (10, 0.15), (11, 0.15), (12, 0.15), (16, 0.14), (20, 0.09)):
        colors = figures.themed_colors(n)
        assert len(colors) == n and min_distance(colors) > least, n
    assert figures.themed_colors(3) == sns.color_palette("colorblind", 3)  # the usual look
    with pytest.raises(ValueError, match="palette must be one of"):
        figures.themed_colors(3, "rainbow")


def luminance(color) -> float:
    r, g, b = color[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_a_sweep_gets_a_ramp_in_value_order_and_other_conditions_grey():
    order = ["lr0p06", "lr0p04", "lr0p03", "lr0p02", "tuned"]
    colors = figures.condition_colors(order, "sequential", order[:4])
    lum = [luminance(colors[c]) for c in order[:4]]
    assert lum == sorted(lum) and min_distance([colors[c] for c in order[:4]]) > 0.1
    r, g, b = colors["tuned"]
    assert r == g == b  # outside the sweep: grey
    groups = [["d8_a", "d8_b", "d8_c"], ["d12_a", "d12_b", "d12_c"]]
    colors = figures.condition_colors([c for g in groups for c in g], "sequential", groups)
    for group in groups:
        lum = [luminance(colors[c]) for c in group]
        assert lum == sorted(lum)  # dark to light within each group
    blue, orange = colors["d8_a"], colors["d12_a"]
    assert blue[2] > blue[0] and orange[0] > orange[2]  # a hue per group
    with pytest.raises(ValueError, match="sweep_conditions needs palette 'sequential'"):
        figures.condition_colors(order, "qualitative", order)


def test_a_sequential_palette_keeps_the_value_order_on_the_axis(tmp_path, drawn):
    runs = matched_runs()
    figures.plot_final(runs, tmp_path / "f.png", conditions=["worse", "baseline", "mixed"],
                       baseline="baseline", palette="sequential")  # fmt: skip
    labels = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert labels == ["worse", "baseline", "mixed"]


def twelve_conditions():
    names = [f"momentum_linear_0p{98 - i}_to_0p90" for i in range(12)]
    rows = [
        {"condition": c, "seed": s, "q_val_bpb": 1.22 + 0.002 * i + 0.003 * s, "diverged": False}
        for i, c in enumerate(names)
        for s in range(3)
    ]
    runs = pd.DataFrame(rows)
    return runs.assign(val_bpb=runs["q_val_bpb"] - 0.004), names


def assert_apart(fig, ax):
    """The axis' tick labels, as drawn, side by side without overlapping."""
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 2
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert a.x1 <= b.x0, (a, b)


@pytest.mark.parametrize("plot", ["plot_final", "plot_paired", "plot_quant_gap"])
def test_twelve_long_condition_names_fit_a_bounded_width(tmp_path, drawn, plot):
    runs, names = twelve_conditions()
    getattr(figures, plot)(runs, tmp_path / "x.png", conditions=names, baseline=names[0])
    fig = drawn[0]
    assert fig.get_figwidth() <= figures.MAX_WIDTH
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if plot != "plot_quant_gap":
            assert_apart(fig, ax)
            assert ax.get_window_extent(renderer).height / fig.dpi > 2.5  # not squashed
        legend = ax.get_legend()
        if legend is not None:  # inside the figure, not cut off
            box, page = legend.get_window_extent(renderer), fig.bbox
            assert box.x0 >= page.x0 and box.x1 <= page.x1 + 1, (box, page)


def test_condition_names_stay_level_when_they_fit(tmp_path, drawn):
    figures.plot_final(matched_runs(), tmp_path / "f.png", conditions=ORDER, baseline="baseline")
    ax = drawn[0].axes[0]
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [0, 0, 0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ORDER
    assert figures._wrap("momentum_linear_0p98_to_0p90") == "momentum_\nlinear_\n0p98_to_\n0p90"


def test_layer_axis_has_integer_ticks(tmp_path, drawn):
    runs = every_kind_table()["runs"]
    figures.plot_momentum(runs, tmp_path / "m.png", baseline="uniform")
    ax = drawn[0].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [0, 1, 2, 3]


def test_quantization_legend_prints_costs_sensibly(tmp_path, drawn):
    assert figures._cost_label("a", np.array([0.01])) == "a (+0.0100, n=1)"
    assert figures._cost_label("b", np.array([0.004, 0.004])) == "b (+0.0040, n=2)"
    assert figures._cost_label("c", np.array([0.010, 0.012])) == "c (+0.0110 ± 0.0014, n=2)"
    assert figures._cost_label("d", np.array([-1e-5, -2e-5])) == "d (-1.5e-05 ± 7.1e-06, n=2)"
    assert figures._cost_label("e", np.array([0.0, 0.0])) == "e (0, n=2)"
    assert figures._cost_label("f", np.array([])) == "f (no runs)"
    runs = pd.DataFrame({
        "condition": ["a", "a", "b", "c"], "seed": [0, 1, 0, 0],
        "val_bpb": [2.5, 2.6, 2.5, 2.5], "q_val_bpb": [2.5, 2.6, 2.49999, 2.51],
        "diverged": False,
    })  # fmt: skip
    figures.plot_quant_gap(runs, tmp_path / "q.png", conditions=["a", "b", "c"], baseline="a")
    texts = [t.get_text() for t in drawn[0].axes[0].get_legend().get_texts()]
    assert texts == ["no cost", "a (0, n=2)", "b (-1e-05, n=1)", "c (+0.0100, n=1)"]
    assert not any("+-" in t or "0.0000" in t for t in texts)


def test_cli_draws_the_paired_figure_and_refuses_bad_palettes(tmp_path, capsys):
    path = tmp_path / "runs.parquet"
    matched_runs().to_parquet(path)
    out = tmp_path / "figs/paired_q_val_bpb.png"
    options = {"figure": "paired_q_val_bpb", "conditions": ORDER, "baseline": "baseline"}
    figures.main(["--options", json.dumps(options), "--table", str(path), "--out", str(out)])
    assert out.read_bytes().startswith(PNG_MAGIC)
    for extra, message in (
        ({"palette": "rainbow"}, "palette must be one of"),
        ({"sweep_conditions": ["worse"]}, "sweep_conditions needs palette 'sequential'"),
        ({"palette": "sequential", "sweep_conditions": ["nope"]}, "['nope'] are not in"),
    ):
        argv = ["--options", json.dumps({**options, **extra}), "--table", str(path)]
        with pytest.raises(SystemExit):
            figures.main([*argv, "--out", str(out)])
        assert message in capsys.readouterr().err
    options.update(palette="sequential", sweep_conditions=[["baseline", "worse"], ["mixed"]])
    figures.main(["--options", json.dumps(options), "--table", str(path), "--out", str(out)])


def test_figure_list_has_the_paired_sequential_and_rule_figures():
    for metric in FINAL_METRICS:
        spec = PLOTTED[f"paired_{metric}"]
        assert (spec.kind, spec.table, spec.metric) == ("paired", "runs", metric)
    assert FIGURES["sequential"].kind == "sequential" and "sequential" not in PLOTTED
    assert FIGURES["rule_over_steps"].kind == "curve_rule" and "rule_over_steps" not in PLOTTED
    names = report_figures("val_bpb", False, False, False, paired=True, sequential=True,
                           rule_steps=True)  # fmt: skip
    assert names[:5] == [
        "val_bpb_vs_step", "final_val_bpb", "paired_val_bpb", "sequential", "rule_over_steps"
    ]  # fmt: skip
    assert "paired_val_bpb" not in report_figures("val_bpb", False, False, False)
    assert set(report_figures("steps_to_target", True, True, True, True, True, True)) <= set(
        FIGURES
    )
