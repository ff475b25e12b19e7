"""A study's tables from real speedlab runs: collect reads what training and the quantization
roundtrip wrote, and joins the runs imported from other tools' logs."""

import json

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
def run_dir(tmp_path_factory, shards):
    """A 2-step run of the quickstart's layerwise condition, with its roundtrip.json."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"
    cfg = run_config(validate(config), "quickstart", "layerwise")
    cfg["train"].update(steps=2, val_every=2, log_every=1)
    out = tmp_path_factory.mktemp("runs") / "layerwise" / "seed0"
    meta = {"study": "quickstart", "condition": "layerwise"}
    val, token_bytes = shards / "fineweb_val.json", shards / "token_bytes.npy"
    train(cfg, 0, shards / "fineweb_train.json", val, token_bytes, out, meta)
    roundtrip(out / "model.pt", val, token_bytes, out / "roundtrip.json")
    return out


def read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("baseline", ["layerwise", "uniform"])
def test_runs_and_curves_carry_what_the_run_wrote(run_dir, baseline):
    runs, curves = collect([run_dir / "summary.json"], baseline)

    cfg_columns = sorted(c for c in runs.columns if c.startswith("cfg."))
    assert list(runs.columns) == [*COLUMNS, *cfg_columns]
    assert {name: str(runs[name].dtype) for name in COLUMNS} == {
        name: dtype for name, (dtype, _) in COLUMNS.items()
    }
    (row,) = runs.to_dict("records")
    summary, rt = read(run_dir / "summary.json"), read(run_dir / "roundtrip.json")
    prov = read(run_dir / "provenance.json")
    assert row["is_baseline"] == (baseline == "layerwise")
    assert row["study"] == "quickstart" and row["condition"] == "layerwise" and row["seed"] == 0
    assert row["source"] == "speedlab" and row["world_size"] == 1 and row["gpu_hours"] == 0.0
    for name in (
        "steps",
        "tokens",
        "train_time_s",
        "val_bpb",
        "config_hash",
        "n_params",
        "model_flops",
    ):
        assert row[name] == summary[name], name
    for name in ("q_val_bpb", "q_val_loss", "compressed_bytes", "artifact_bytes"):
        assert row[name] == rt[name], name
    assert row["device"] == prov["device"] == "cpu" and row["host"] == prov["host"]
    config = {f"cfg.{k}": "{}" if v == {} else v for k, v in flatten(prov["config"]).items()}
    assert sorted(config) == cfg_columns
    assert all(row[name] == value for name, value in config.items())
    assert row["cfg.train.steps"] == row["steps"] == 2

    assert list(curves.columns) == list(CURVE_COLUMNS)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    expected = [(r["step"], m, r[m]) for r in records for m in CURVE_METRICS if m in r]
    assert list(zip(curves["step"], curves["metric"], curves["value"], strict=True)) == expected
    assert set(curves["metric"]) == set(CURVE_METRICS)


def test_imported_runs_join_the_tables(run_dir, tmp_path):
    log = tmp_path / "pg.log"
    log.write_text(golf_log())
    row, rows = import_log(log, study="quickstart", condition="parameter_golf", seed=1337)
    runs_frame(row).to_parquet(tmp_path / "r.parquet")
    curves_frame(rows).to_parquet(tmp_path / "c.parquet")
    pair = (tmp_path / "r.parquet", tmp_path / "c.parquet")

    runs, curves = collect([run_dir / "summary.json"], "parameter_golf", [pair])
    assert runs["condition"].tolist() == ["layerwise", "parameter_golf"]  # sorted
    assert runs["is_baseline"].tolist() == [False, True]  # this study's baseline, not the log's
    assert runs["source"].tolist() == ["speedlab", "parameter_golf"]
    assert runs["seed"].tolist() == [0, 1337]
    assert (curves["condition"] == "parameter_golf").sum() == len(rows)

    only_imported, _ = collect([], "speedlab", [pair])
    assert only_imported["source"].tolist() == ["parameter_golf"]
    assert not only_imported["is_baseline"].any()


def test_a_run_without_its_roundtrip_names_the_missing_file(run_dir, tmp_path):
    broken = tmp_path / "layerwise" / "seed0"
    broken.mkdir(parents=True)
    for name in ("summary.json", "provenance.json", "metrics.jsonl"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"layerwise/seed0/roundtrip\.json"):
        collect([broken / "summary.json"], "uniform")


def test_schema_lists_every_column(capsys):
    main(["--schema"])
    out = capsys.readouterr().out
    assert out.startswith("| column | type | meaning |")
    for name, (dtype, _) in COLUMNS.items():
        assert f"| `{name}` | {dtype} |" in out
    assert "`cfg.<key>`" in out
