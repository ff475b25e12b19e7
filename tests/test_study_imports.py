"""Imports that cannot mislead: duplicates, seeds against the log, imports-only studies,
published per-seed tables, pooled arms (speedlab.analysis.imports, collect, config)."""

import copy

import pandas as pd
import pytest
import yaml
from test_import_logs import GOLF_DATA, golf_log

from conftest import REPO
from speedlab.analysis.collect import collect, mark_pooled, table_frames
from speedlab.analysis.import_logs import import_log, runs_frame
from speedlab.analysis.imports import ImportsError, import_runs
from speedlab.config import ConfigError, study_conditions, validate

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def config_with(study: dict) -> dict:
    config = copy.deepcopy(BASE)
    config["studies"] = {"s": study}
    return config


def pg_log(tmp_path, seed: int, name: str | None = None, bpb: str = "1.22436570"):
    data = GOLF_DATA.replace("seed:1337", f"seed:{seed}").replace("1.22436570", bpb)
    path = tmp_path / (name or f"pg{seed}.log")
    path.write_text(golf_log(data))
    return path


def test_the_same_condition_and_seed_twice_names_both_sources(tmp_path):
    a, b = pg_log(tmp_path, 1337, "a.log"), pg_log(tmp_path, 1337, "b.log")
    entries = [{"log": str(p), "condition": "pg", "seed": 1337} for p in (a, b)]
    study = {"baseline": "pg", "imports": entries}
    both = r"studies.s.imports.0 \(.*a.log\) and studies.s.imports.1 \(.*b.log\)"
    with pytest.raises(ConfigError, match=r"condition 'pg' seed 1337 comes from both " + both):
        validate(config_with(study))


def test_an_import_of_a_trained_run_is_a_duplicate(tmp_path):
    log = pg_log(tmp_path, 0)
    study = {"baseline": "uniform", "seeds": [0], "conditions": {"uniform": {}},
             "imports": [{"log": str(log), "condition": "uniform", "seed": 0}]}  # fmt: skip
    with pytest.raises(ConfigError, match="both the trained runs of condition 'uniform'"):
        validate(config_with(study))


def test_collect_refuses_a_run_counted_twice(tmp_path):
    """Even past the config (two import tables made by hand), one seed is never two."""
    frames = []
    for name in ("a", "b"):
        row, curves = import_log(pg_log(tmp_path, 1337, f"{name}.log"), study="s",
                                 condition="pg", seed=1337)  # fmt: skip
        runs = tmp_path / f"{name}.runs.parquet"
        runs_frame(row).to_parquet(runs)
        cur = tmp_path / f"{name}.curves.parquet"
        pd.DataFrame(curves).to_parquet(cur)
        frames.append((runs, cur))
    with pytest.raises(ValueError, match=r"seed 1337 comes from .*a.log and from .*b.log"):
        collect([], "pg", frames)


def test_a_seed_the_log_contradicts_is_an_error(tmp_path):
    log = pg_log(tmp_path, 1337)
    with pytest.raises(ValueError, match="1338"):
        import_log(log, study="s", condition="pg", seed=1338)


def test_an_imports_only_study_validates_and_lists_its_conditions(tmp_path):
    logs = [pg_log(tmp_path, s) for s in (1, 2)]
    table = tmp_path / "published.csv"
    table.write_text("condition,seed,val_bpb\nrecord,1,1.10\nrecord,2,1.11\n")
    study = {"baseline": "pg", "imports": [{"log": str(p), "condition": "pg"} for p in logs]
             + [{"table": str(table)}]}  # fmt: skip
    config = validate(config_with(study))
    spec = config["studies"]["s"]
    assert study_conditions(spec) == ["pg", "record"]
    items = import_runs("s", spec)
    assert [(i["condition"], i["seed"]) for i in items] == [
        ("pg", 1),
        ("pg", 2),
        ("record", 1),
        ("record", 2),
    ]  # seeds read from each log's own seed line, and from the table


def test_a_study_with_nothing_to_compare_is_refused():
    with pytest.raises(ConfigError, match="no conditions to train and no imports"):
        validate(config_with({"baseline": "a"}))


def test_trained_conditions_need_seeds():
    with pytest.raises(ConfigError, match=r"studies.s.seeds: empty, but the study trains a"):
        validate(config_with({"baseline": "a", "conditions": {"a": {}}}))


def test_a_missing_log_names_its_entry():
    study = {"baseline": "pg", "imports": [{"log": "nowhere.log", "condition": "pg"}]}
    with pytest.raises(ConfigError, match=r"studies.s.imports.0: .*nowhere.log"):
        validate(config_with(study))


def test_a_published_table_becomes_runs_rows(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("condition,seed,q_val_bpb,steps\nbase,1,1.2286,\nnew,1,1.2230,5100\n")
    runs, curves = table_frames(str(table), "s")
    assert list(runs["q_val_bpb"]) == [1.2286, 1.2230] and curves.empty
    assert runs["steps"].isna().tolist() == [True, False]  # absent stays absent
    assert set(runs["source"]) == {"table"} and set(runs["log_path"]) == {str(table)}
    only = table_frames(str(table), "s", condition="new")[0]
    assert list(only["condition"]) == ["new"]
    pq = tmp_path / "t.parquet"
    pd.read_csv(table).to_parquet(pq)
    assert list(table_frames(str(pq), "s")[0]["q_val_bpb"]) == [1.2286, 1.2230]


@pytest.mark.parametrize(
    "text, message",
    [
        ("cond,seed,val_bpb\na,1,1.0\n", "no column condition"),
        ("condition,seed,val_bpb\na,one,1.0\n", "row 2: seed 'one' is not an integer"),
        ("condition,seed,val_bpb\na,1,low\n", "column val_bpb: 'low' is not a number"),
        ("condition,seed,bpb\na,1,1.0\n", "columns bpb are not runs.parquet columns"),
        ("condition,seed,val_bpb\n", "the table has no rows"),
    ],
)
def test_a_bad_table_is_refused_naming_the_file(tmp_path, text, message):
    table = tmp_path / "bad.csv"
    table.write_text(text)
    with pytest.raises(ImportsError, match=message) as e:
        table_frames(str(table), "s")
    assert str(table) in str(e.value)


def test_a_missing_table_is_refused_by_validation():
    study = {"baseline": "a", "imports": [{"table": "nowhere.csv"}]}
    with pytest.raises(ConfigError, match="nowhere.csv: no such table"):
        validate(config_with(study))


def arm(**columns) -> pd.DataFrame:
    base = {"condition": ["pg", "pg"], "seed": [1, 2], "source": ["parameter_golf"] * 2,
            "log_path": ["a.log", "b.log"], "pooled": [False, False]}  # fmt: skip
    return pd.DataFrame({**base, **columns})


def test_runs_of_different_code_in_one_arm_are_refused():
    runs = arm(code_sha256=["aaa", "bbb"])
    with pytest.raises(ValueError, match=r"condition 'pg' pools runs of different code or "
                       r"config: a.log seed 1; b.log seed 2.*pool: true"):  # fmt: skip
        mark_pooled(runs)


def test_runs_of_different_logged_config_in_one_arm_are_refused():
    runs = arm(**{"cfg.optim.matrix_lr": [0.04, 0.02], "cfg.train.seed": [1, 2]})
    with pytest.raises(ValueError, match="pools runs of different code or config"):
        mark_pooled(runs)
    same = arm(**{"cfg.optim.matrix_lr": [0.04, 0.04], "cfg.train.seed": [1, 2]})
    assert not mark_pooled(same)["pooled"].any()  # seeds differ, as they should


def test_pool_true_allows_the_arm_and_marks_it():
    runs = arm(code_sha256=["aaa", "bbb"], pooled=[False, True])
    assert mark_pooled(runs)["pooled"].all()


def test_import_metrics_pick_the_printed_final_line(tmp_path):
    data = GOLF_DATA + "final_int6_sliding_window_exact val_loss:2.00000000 val_bpb:1.11111111\n"
    log = tmp_path / "pg.log"
    log.write_text(golf_log(data))
    row, curves = import_log(log, study="s", condition="pg", seed=1337)
    runs, cur = tmp_path / "r.parquet", tmp_path / "c.parquet"
    runs_frame(row).to_parquet(runs)
    pd.DataFrame(curves).to_parquet(cur)
    mapping = {str(runs): {"q_val_bpb": "final_int6_sliding_window_exact.val_bpb"}}
    table, _ = collect([], "pg", [(runs, cur)], import_metrics=mapping)
    assert table["q_val_bpb"].item() == 1.11111111
    bad = {str(runs): {"q_val_bpb": "final_nothing.val_bpb"}}
    with pytest.raises(ValueError, match="no final line final_nothing.val_bpb"):
        collect([], "pg", [(runs, cur)], import_metrics=bad)


@pytest.mark.parametrize(
    "sources, paired",
    [(("speedlab", "speedlab"), True), (("command", "command"), True),
     (("speedlab", "command"), False), (("table", "table"), False),
     (("parameter_golf", "parameter_golf"), False)],
)  # fmt: skip
def test_auto_pairs_only_runs_one_program_trained_from_the_seed(sources, paired):
    from speedlab.analysis.decision import pairing

    runs = pd.DataFrame({
        "condition": ["a"] * 3 + ["b"] * 3, "seed": [1, 2, 3] * 2,
        "source": [sources[0]] * 3 + [sources[1]] * 3, "diverged": False,
        "val_bpb": [1.0, 1.1, 1.2, 1.01, 1.12, 1.19],
    })  # fmt: skip
    assert pairing(runs, "val_bpb", "b", "a")[2] is paired
    assert pairing(runs, "val_bpb", "b", "a", design="paired")[2] is True
