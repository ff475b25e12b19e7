"""A study's tables from real speedlab runs: collect reads what training and the quantization
roundtrip wrote, and joins the runs imported from other tools' logs."""

import json

import pandas as pd
import pytest
import yaml
from test_import_logs import golf_log

from conftest import REPO
from speedlab.analysis.collect import COLUMNS, CURVE_COLUMNS, CURVE_METRICS, collect, main
from speedlab.analysis.import_logs import curves_frame, import_log, runs_frame
from speedlab.config import flatten, run_config, validate
from speedlab.train.loop import train
from speedlab.train.quantize import roundtrip


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, shards):
    """Two 4-step quickstart runs (the baseline and layerwise), each with its roundtrip.json."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"
    config = validate(config)
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for condition in ("uniform", "layerwise"):
        cfg = run_config(config, "quickstart", condition)
        cfg["train"].update(steps=4, val_every=2, log_every=1)
        out = root / condition / "seed0"
        meta = {"study": "quickstart", "condition": condition}
        val, token_bytes = shards / "fineweb_val.json", shards / "token_bytes.npy"
        train(cfg, 0, shards / "fineweb_train.json", val, token_bytes, out, meta)
        roundtrip(out / "model.pt", val, token_bytes, out / "roundtrip.json")
        dirs[condition] = out
    return dirs


def read(path):
    return json.loads(path.read_text())


def test_runs_and_curves_carry_what_the_runs_wrote(run_dirs):
    runs, curves = collect([d / "summary.json" for d in run_dirs.values()], "uniform")

    cfg_columns = sorted(c for c in runs.columns if c.startswith("cfg."))
    assert list(runs.columns) == [*COLUMNS, *cfg_columns]
    assert {name: str(runs[name].dtype) for name in COLUMNS} == {
        name: dtype for name, (dtype, _) in COLUMNS.items()
    }
    assert runs["condition"].tolist() == ["layerwise", "uniform"]  # sorted by condition, seed
    for row in runs.to_dict("records"):
        d = run_dirs[row["condition"]]
        summary, rt = read(d / "summary.json"), read(d / "roundtrip.json")
        prov = read(d / "provenance.json")
        assert row["is_baseline"] == (row["condition"] == "uniform")
        assert row["source"] == "speedlab" and row["world_size"] == 1 and row["gpu_hours"] == 0.0
        for name in ("steps", "tokens", "train_time_s", "val_bpb", "config_hash", "n_params"):
            assert row[name] == summary[name], name
        for name in ("q_val_bpb", "q_val_loss", "compressed_bytes", "artifact_bytes"):
            assert row[name] == rt[name], name
        assert row["device"] == prov["device"] == "cpu" and row["host"] == prov["host"]
        config = {f"cfg.{k}": v for k, v in flatten(prov["config"]).items()}
        assert sorted(config) == cfg_columns
        for name, value in config.items():  # a None beside numbers reads as NaN
            assert row[name] == value or (value is None and pd.isna(row[name])), name
        assert row["cfg.train.steps"] == 4

    assert list(curves.columns) == list(CURVE_COLUMNS)
    lines = (run_dirs["uniform"] / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    mine = curves[curves["condition"] == "uniform"]
    expected = [(r["step"], m, r[m]) for r in records for m in CURVE_METRICS if m in r]
    assert list(zip(mine["step"], mine["metric"], mine["value"], strict=True)) == expected
    assert set(mine["metric"]) == set(CURVE_METRICS)


def test_imported_runs_join_the_tables(run_dirs, tmp_path):
    log = tmp_path / "pg.log"
    log.write_text(golf_log())
    row, rows = import_log(log, study="quickstart", condition="parameter_golf", seed=1337)
    runs_frame(row).to_parquet(tmp_path / "r.parquet")
    curves_frame(rows).to_parquet(tmp_path / "c.parquet")
    pair = (tmp_path / "r.parquet", tmp_path / "c.parquet")

    runs, curves = collect([run_dirs["uniform"] / "summary.json"], "parameter_golf", [pair])
    assert runs["condition"].tolist() == ["parameter_golf", "uniform"]
    assert runs["is_baseline"].tolist() == [
        True,
        False,
    ]  # is_baseline follows this study's baseline
    assert runs["source"].tolist() == ["parameter_golf", "speedlab"]
    assert runs["seed"].tolist() == [1337, 0]
    assert len(curves) == len(rows) + (curves["condition"] == "uniform").sum()

    only_imported, _ = collect([], "speedlab", [pair])
    assert only_imported["source"].tolist() == ["parameter_golf"]
    assert not only_imported["is_baseline"].any()


def test_a_run_without_its_roundtrip_names_the_missing_file(run_dirs, tmp_path):
    broken = tmp_path / "uniform" / "seed0"
    broken.mkdir(parents=True)
    for name in ("summary.json", "provenance.json", "metrics.jsonl"):
        (broken / name).write_bytes((run_dirs["uniform"] / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"uniform/seed0/roundtrip\.json"):
        collect([broken / "summary.json"], "uniform")


def test_schema_lists_every_column(capsys):
    main(["--schema"])
    out = capsys.readouterr().out
    assert out.startswith("| column | type | meaning |")
    for name, (dtype, _) in COLUMNS.items():
        assert f"| `{name}` | {dtype} |" in out
    assert "`cfg.<key>`" in out
