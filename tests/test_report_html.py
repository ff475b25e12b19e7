"""The self-contained report.html, opened in a real headless Chromium."""

import os
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from speedlab.analysis.collect import typed_runs
from speedlab.analysis.figures import plot_final
from speedlab.analysis.report import write_html, write_report
from speedlab.analysis.stats import write_stats

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report_md(tmp_path):
    rows = []
    for cond, vals in (("uniform", [1.50, 1.52, 1.49]), ("layerwise", [1.40, 1.41, 1.42])):
        for seed, v in enumerate(vals):
            rows.append(
                dict(study="s", condition=cond, seed=seed, is_baseline=cond == "uniform",
                     steps=200, tokens=409600, n_params=592144, q_val_bpb=v, val_bpb=v - 0.001,
                     compressed_bytes=571000, train_time_s=40.0, diverged=False, device="cpu",
                     host="h", torch="2.13")
            )  # fmt: skip
    runs = typed_runs(pd.DataFrame(rows))
    study = tmp_path / "results/studies/s"
    plot_final(runs, study / "figures/final.png", conditions=["uniform", "layerwise"])
    runs.to_parquet(study / "runs.parquet")
    write_stats(runs, "q_val_bpb", "uniform", ["uniform", "layerwise"], 3, study / "stats.csv")
    options = {
        "study": "s",
        "description": "Is layerwise better?",
        "metric": "q_val_bpb",
        "baseline": "uniform",
        "planned_seeds": 3,
        "conditions": {"uniform": {}, "layerwise": {"optim.momentum_first": 0.98}},
        "published": None,
        "scale": "default",
        "runs": str(study / "runs.parquet"),
        "stats": str(study / "stats.csv"),
        "sweep": None,
        "scaling": None,
        "figures": [{"title": "Final", "path": str(study / "figures/final.png")}],
    }
    write_report(options, study / "report.md")
    return study / "report.md"


def test_html_is_self_contained(report_md, tmp_path):
    page = write_html(report_md, tmp_path / "report.html")
    assert page.count('src="data:image/png;base64,') == 1
    assert 'src="figures/' not in page and "<table>" in page
    assert "Is layerwise better?" in page and "<title>Study s</title>" in page


@pytest.mark.slow
def test_html_renders_in_headless_chromium(report_md, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    html = tmp_path / "elsewhere" / "report.html"  # away from the figures: must not need them
    html.parent.mkdir()
    write_html(report_md, html)
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
             "--window-size=1100,2600", f"--screenshot={shot}"]  # fmt: skip
    p = subprocess.run(
        [CHROMIUM, *flags, html.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert shot.exists(), p.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2600, 1100)
    # Text, tables and the embedded figure make the page far from blank, and the figure's
    # coloured points (seaborn's colorblind palette) are on it.
    assert img.std() > 0.05
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 0.4).sum() > 200
    assert np.isfinite(img).all()
