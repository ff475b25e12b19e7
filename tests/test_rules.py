"""The workflow's wiring: one plot rule for every listed figure, the analysis modules' --options
JSON (and its errors), the report's inputs and figure list, and a strict shell that fails a
job whose Python fails inside `| tee`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FINEWEB_JSONL, smoke_quickstart_config, snakemake_cmd
from speedlab.analysis.figure_list import FIGURES, FINAL_METRICS, PLOTTED, report_figures
from speedlab.config import load_schema


def run_env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_every_study_metric_has_its_final_figure():
    study = load_schema()["properties"]["studies"]["additionalProperties"]
    metrics = study["properties"]["metric"]["enum"]
    assert set(metrics) <= set(FINAL_METRICS)
    for metric in metrics:
        names = report_figures(metric, momentum=False, sweep=False, scaling=False)
        assert f"final_{metric}" in names and set(names) <= set(PLOTTED)
    assert report_figures("val_bpb", True, True, True)[-3:] == [
        "momentum_per_layer",
        "sweep",
        "scaling",
    ]
    assert set(FIGURES) - set(PLOTTED) == {
        "sweep",
        "scaling",
        "sequential",
        "rule_over_steps",
        "metric_vs_flops",
    }  # drawn by their own rules


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{not json", "not JSON"),
        ('["final_q_val_bpb"]', "expected a JSON object"),
        ('{"conditions": ["a"]}', "missing ['figure']"),
        ('{"figure": "final_q_val_bpb", "baselin": "a"}', "unknown ['baselin']"),
        ('{"figure": "final_loss"}', "unknown figure 'final_loss'"),
    ],
)
def test_bad_options_are_refused_naming_the_key(tmp_path, capsys, options, message):
    from speedlab.analysis.figures import main

    with pytest.raises(SystemExit) as e:
        main(["--options", options, "--table", str(tmp_path / "runs.parquet"), "--out", "x.png"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--options" in err and message in err, err


def test_missing_options_of_the_stats_rule_are_named(capsys):
    from speedlab.analysis.stats import main

    options = json.dumps({"metrics": ["q_val_bpb"], "baseline": "a"})
    with pytest.raises(SystemExit):
        main(["--options", options, "--runs", "runs.parquet", "--out", "stats.csv"])
    assert "missing ['conditions', 'planned_seeds']" in capsys.readouterr().err


def dry_run_commands(workdir: Path, *targets: str) -> dict[str, list[tuple[list[str], str]]]:
    """`snakemake -n -p`: rule -> [(its shell command as argv, its input line)]."""
    cmd = snakemake_cmd(workdir, "-n", "-p", "--cores", "1", *targets)
    p = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    jobs = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:)", p.stdout + p.stderr, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        inputs = re.search(r"^\s+input: (.*)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$|^\s{4}(python .*)$", block, re.M)
        command = shell.group(1) or shell.group(2) if shell else ""
        jobs.setdefault(rule, []).append((shlex.split(command), inputs.group(1) if inputs else ""))
    return jobs


def option(argv: list[str]) -> dict:
    return json.loads(argv[argv.index("--options") + 1])


@pytest.fixture(scope="module")
def sweep_workdir(tmp_path_factory):
    """The quickstart (conditions differ in momentum) and a weight-decay sweep over two widths
    with a scaling fit."""
    d = tmp_path_factory.mktemp("wiring")
    config = smoke_quickstart_config()
    config["studies"]["wd"] = {
        "baseline": "w1_d64",
        "seeds": [0],
        "metric": "val_bpb",
        "sweep": {
            "key": "optim.weight_decay",
            "group": "model.d_model",
            "fit": True,
            "expect_exponent": -2,
        },
        "conditions": {
            f"w{i}_d{d}": {"optim.weight_decay": 0.1 * i, "model.d_model": d}
            for i in (1, 2)
            for d in (64, 128)
        },
    }
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    return d


def test_the_report_reads_every_file_its_options_name(sweep_workdir):
    jobs = dry_run_commands(
        sweep_workdir, "results/studies/wd/report.md", "results/studies/quickstart/report.md"
    )
    reports = {
        option(argv)["study"]: (option(argv), inputs) for argv, inputs in jobs["write_report"]
    }
    wd, wd_inputs = reports["wd"]
    titles = [f["title"] for f in wd["figures"]]
    assert titles == [
        "Validation bpb vs step",
        "Final val_bpb per condition",
        "val_bpb per seed: matched seeds and their differences from the baseline",
        "Validation bpb vs training time",
        "Validation metric vs training FLOPs",
        "Train loss vs step",
        "Quantization cost per run",
        "Training time per condition",
        "Sweep",
        "Scaling fit",
    ]
    assert wd["sweep"] == "results/studies/wd/sweep.csv"
    assert wd["scaling"] == "results/studies/wd/scaling.json"
    assert wd["metric"] == "val_bpb" and wd["planned_seeds"] == 1 and wd["published"] is None
    assert wd["conditions"]["w2_d128"] == {"optim.weight_decay": 0.2, "model.d_model": 128}
    assert wd["sweep_tests"] == "results/studies/wd/sweep_tests.csv"
    assert wd["sequential"] is None and wd["design"] == "auto"
    assert wd["decision"]["rule"] == "difference" and wd["data"]["shards"]
    assert wd["compute"] == "results/studies/wd/compute.csv"
    files = [wd["runs"], wd["stats"], wd["sweep"], wd["sweep_tests"], wd["scaling"]]
    files.append(wd["compute"])
    for path in files + [f["path"] for f in wd["figures"]]:
        assert path in wd_inputs.split(", "), path
    assert "src/speedlab/analysis/templates/report.md.j2" in wd_inputs

    quick, _ = reports["quickstart"]
    assert quick["sweep"] is None and quick["scaling"] is None
    assert [f["title"] for f in quick["figures"]][-1] == "Momentum per layer"
    assert "figures/momentum_per_layer.png" in quick["figures"][-1]["path"]


def test_one_plot_rule_draws_each_figure_from_its_table(sweep_workdir):
    jobs = dry_run_commands(sweep_workdir, "results/studies/wd/report.md")
    plotted = {}
    for argv, _ in jobs["plot_figure"]:
        assert argv[:3] == ["python", "-m", "speedlab.analysis.figures"], argv
        o = option(argv)
        table, out = argv[argv.index("--table") + 1], argv[argv.index("--out") + 1]
        assert out == f"results/studies/wd/figures/{o['figure']}.png"
        assert table == f"results/studies/wd/{PLOTTED[o['figure']].table}.parquet"
        assert o["baseline"] == "w1_d64"
        assert sorted(o["conditions"]) == ["w1_d128", "w1_d64", "w2_d128", "w2_d64"]
        plotted[o["figure"]] = o
    assert set(plotted) == set(report_figures("val_bpb", False, False, False, paired=True))
    (sweep,) = jobs["analyse_sweep"]
    assert option(sweep[0]) == {
        "key": "optim.weight_decay",
        "metric": "val_bpb",
        "group": "model.d_model",
        "default": None,
        "conditions": None,
    }
    (fit,) = jobs["fit_scaling"]
    assert option(fit[0])["expect"] == -2 and option(fit[0])["group"] == "model.d_model"
    (comp,) = jobs["compare_compute"]
    assert option(comp[0])["metric"] == "val_bpb" and option(comp[0])["baseline"] == "w1_d64"
    stats = option(jobs["compute_stats"][0][0])
    assert stats["metrics"] == ["val_bpb", "train_time_s"] and stats["planned_seeds"] == 1


@pytest.mark.slow
def test_a_python_error_inside_tee_fails_the_job_and_leaves_no_output(tmp_path):
    """prepare_corpus runs `python ... 2>&1 | tee {log}`: with a text column the documents do
    not have, Python fails; the job must fail as a shell error (not as outputs gone missing
    after a successful command), with the error in its log and no corpus files left."""
    config = smoke_quickstart_config()
    config["data"].update(source="local", local=str(FINEWEB_JSONL), text_column="body")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    corpus = config["data"]["corpus"]
    target = f"results/data/{corpus}/train.parquet"
    cmd = snakemake_cmd(tmp_path, "--cores", "1", target)
    p = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "Error in rule prepare_corpus" in out, out
    assert "MissingOutputException" not in out and "latency" not in out, out
    log = (tmp_path / f"logs/prepare_corpus/{corpus}.log").read_text()
    assert "'body'" in log, log
    data = tmp_path / "results" / "data" / corpus
    assert not data.exists() or not any(data.iterdir()), list(data.iterdir())
