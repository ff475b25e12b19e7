"""The self-contained report.html, opened in a real headless Chromium."""

import html as htmllib
import json
import os
import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest
from test_report import PUBLISHED, ngpt_study, runs_frame

from speedlab.analysis.figures import plot_final
from speedlab.analysis.report import write_html, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1280  # a laptop's browser window


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def report_md(tmp_path):
    """The quickstart-like study with its final-metric figure."""
    from test_report import make_study

    study = tmp_path / "results/studies/s"
    options = make_study(study, runs_frame(), planned=3)
    plot_final(runs_frame(), study / "figures/final.png", conditions=["uniform", "layerwise"])
    write_report(options, study / "report.md")
    return study / "report.md"


@pytest.fixture
def wide_md(tmp_path):
    """The widest results table a study gives: seven conditions with long settings, Holm's
    per-row levels in the interval cells, and the published columns at full scale."""
    study = tmp_path / "results/studies/ngpt"
    options = ngpt_study(study, scale="full")
    values = {c: 1.0 + 0.001 * i for i, c in enumerate(options["conditions"])}
    options["published"] = dict(PUBLISHED, values=values, seeds=dict.fromkeys(values, 1))
    options["conditions"] = {
        c: {"model.ngpt": True, "model.ngpt_alpha": v, "optim.matrix_lr": 0.02,
            "optim.scalar_lr": 0.04, "train.warmdown_iters": 1200}
        for c, v in zip(options["conditions"], (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65),
                        strict=True)
    }  # fmt: skip
    write_report(options, study / "report.md")
    return study / "report.md"


def test_html_is_self_contained(report_md, tmp_path):
    page = write_html(report_md, tmp_path / "report.html")
    assert page.count('src="data:image/png;base64,') == 1
    assert 'src="figures/' not in page and "<table>" in page
    assert "Is layerwise better?" in page and "<title>Study s</title>" in page


@pytest.mark.slow
def test_html_renders_in_headless_chromium(report_md, tmp_path):
    html = tmp_path / "elsewhere" / "report.html"  # away from the figures: must not need them
    html.parent.mkdir()
    write_html(report_md, html)
    shot = tmp_path / "shot.png"
    p = chromium(tmp_path, "--window-size=1100,2600", f"--screenshot={shot}", html.as_uri())
    assert shot.exists(), p.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2600, 1100)
    # Text, tables and the embedded figure make the page far from blank, and the figure's
    # coloured points (seaborn's colorblind palette) are on it.
    assert img.std() > 0.05
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 0.4).sum() > 200
    assert np.isfinite(img).all()


# Measured in the page once laid out: for every table with a verdict column, each verdict
# cell's box against the viewport and against the table's own box (a table wider than the page
# scrolls inside that box, hiding what lies past its right edge).
MEASURE = """
<script>
const out = {width: window.innerWidth, scroll: document.documentElement.scrollWidth, cells: []};
for (const table of document.querySelectorAll("table")) {
  const heads = [...table.querySelectorAll("thead th")].map(th => th.textContent.trim());
  const col = heads.indexOf("verdict");
  if (col < 0) continue;
  const box = table.getBoundingClientRect();
  for (const tr of table.querySelectorAll("tbody tr")) {
    const r = tr.children[col].getBoundingClientRect();
    out.cells.push({text: tr.children[col].textContent.trim(), left: r.left, right: r.right,
                    clip: Math.min(box.right, window.innerWidth), columns: heads.length});
  }
}
const pre = document.createElement("pre");
pre.id = "measure";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>
"""


@pytest.mark.slow
def test_verdicts_are_visible_without_scrolling(wide_md, tmp_path):
    html = tmp_path / "report.html"
    page = write_html(wide_md, html)
    html.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    p = chromium(tmp_path, f"--window-size={WIDTH},900", "--dump-dom", html.as_uri())
    found = re.search(r'<pre id="measure">(.*?)</pre>', p.stdout, flags=re.S)
    assert found, p.stderr[-2000:]
    out = json.loads(htmllib.unescape(found.group(1)))
    assert out["width"] == WIDTH
    assert out["scroll"] <= WIDTH  # the page itself never scrolls sideways
    results = [c for c in out["cells"] if c["columns"] >= 11]
    assert len(results) == 7  # the results table: 11 columns, one row per condition
    assert {c["text"] for c in results} >= {"–", "worse", "better", "no detectable difference"}
    for cell in out["cells"]:
        assert cell["left"] >= 0 and cell["right"] <= cell["clip"], cell
