import copy
import subprocess

import pytest
import yaml
from snakemake.utils import update_config

from conftest import REPO
from speedlab.config import ConfigError, config_hash, run_config, validate

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def cfg(**edits):
    """The quickstart config with dotted-key edits (None deletes the key)."""
    c = copy.deepcopy(BASE)
    for key, value in edits.items():
        *parents, leaf = key.split("/")
        node = c
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return c


def test_quickstart_config_is_valid_and_resolves():
    c = validate(cfg())
    base = run_config(c, "quickstart", "uniform")
    layer = run_config(c, "quickstart", "layerwise")
    assert base["optim"]["momentum_schedule"] == "uniform"
    assert layer["optim"]["momentum_schedule"] == "linear"
    assert layer["optim"]["momentum_first"] == 0.98 and layer["optim"]["momentum_last"] == 0.90
    assert {k: v for k, v in layer.items() if k != "optim"} == {
        k: v for k, v in base.items() if k != "optim"
    }
    assert config_hash(base) != config_hash(layer)
    assert c["execution"]["train_threads"] == 1  # defaults filled in


def test_scale_preset_is_an_override():
    c = validate(cfg(scale="smoke"))
    r = run_config(c, "quickstart", "layerwise")
    assert r["model"]["d_model"] == 64 and r["train"]["steps"] == 40
    assert r["optim"]["momentum_schedule"] == "linear"  # the condition still applies on top


@pytest.mark.parametrize(
    "edits, key",
    [
        ({"defaults/optim/momentm": 0.9}, "defaults.optim"),
        (
            {"studies/quickstart/conditions/layerwise": {"optim.momentm": 0.9}},
            "studies.quickstart.conditions.layerwise.optim",
        ),
        ({"defaults/train/steps": "many"}, "defaults.train.steps"),
        ({"defaults/optim/momentum": 1.0}, "defaults.optim.momentum"),
        (
            {"studies/quickstart/conditions/layerwise": {"optim.momentum_last": -0.1}},
            "studies.quickstart.conditions.layerwise.optim.momentum_last",
        ),
        ({"studies/quickstart/seeds": []}, "studies.quickstart.seeds"),
        ({"studies/quickstart/baseline": "nope"}, "studies.quickstart.baseline"),
        ({"data/source": "s3"}, "data.source"),
        ({"data/max_docs": None}, "data"),
        ({"scale": "huge"}, "scale"),
        ({"tokenizer/vocab_size": 70000}, "tokenizer.vocab_size"),
        (
            {"studies/quickstart/conditions/layerwise": {"model.kind": "transformer"}},
            "studies.quickstart.conditions.layerwise.model.kind",
        ),
        (
            {"studies/quickstart/conditions/layerwise": {"optim.matrix_lr": -0.1}},
            "studies.quickstart.conditions.layerwise.optim.matrix_lr",
        ),
        (
            {
                "studies/quickstart/conditions/layerwise": {
                    "optim.momentum_schedule": "list",
                    "optim.momentum_list": [0.9, 0.95],
                }
            },
            "studies.quickstart.conditions.layerwise.optim.momentum_list",
        ),
        (
            {"studies/quickstart/conditions/layerwise": {"optim.momentum_schedule": "list"}},
            "studies.quickstart.conditions.layerwise.optim.momentum_list",
        ),
        (
            {
                "studies/quickstart/conditions/layerwise": {
                    "model.kind": "ngpt",
                    "optim.weight_decay": 0.1,
                }
            },
            "studies.quickstart.conditions.layerwise.optim.weight_decay",
        ),
        (
            {"studies/quickstart/conditions/layerwise": {"train.gpus": -1}},
            "studies.quickstart.conditions.layerwise.train.gpus",
        ),
        (
            {"studies/quickstart/conditions/layerwise": {"train.gpus": 1.5}},
            "studies.quickstart.conditions.layerwise.train.gpus",
        ),
        ({"execution/gpu_model": "h800"}, "execution.gpu_model"),
        ({"plan/step_time_s": {"default": -0.2}}, "plan.step_time_s.default"),
        ({"plan/overhead_min": -5}, "plan.overhead_min"),
        ({"studies/quickstart/sweep": {"key": "optim.lr"}}, "studies.quickstart.sweep.key"),
        (
            {"studies/quickstart/sweep": {"key": "optim.matrix_lr", "fit": True}},
            "studies.quickstart.sweep.fit",
        ),
        (
            {"studies/quickstart/imports": [{"log": "x.log", "condition": "pg"}]},
            "studies.quickstart.imports.0",
        ),
    ],
)
def test_bad_config_names_the_key(edits, key):
    with pytest.raises(ConfigError) as e:
        validate(cfg(**edits))
    assert f"  {key}:" in str(e.value)


def test_snakemake_refuses_a_bad_config_before_planning(tmp_path, cli_env):
    bad = cfg(**{"studies/quickstart/conditions/layerwise": {"optim.momentum_first": 1.5}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    p = subprocess.run(
        [
            "snakemake",
            "-n",
            "--configfile",
            str(path),
            "--directory",
            str(tmp_path),
            "--snakefile",
            str(REPO / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "studies.quickstart.conditions.layerwise.optim.momentum_first" in out
    assert "1.5 is greater than or equal to the maximum of 1" in out
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def test_a_data_glob_matching_nothing_stops_snakemake_before_any_job(tmp_path, cli_env):
    c = cfg(**{"data/source": "local", "data/local": str(tmp_path / "none-*.jsonl")})
    (tmp_path / "results/data").mkdir(parents=True)
    kept = tmp_path / "results/data/keep.parquet"  # something computed earlier
    kept.write_bytes(b"data")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(c))
    p = subprocess.run(
        ["snakemake", "--cores", "1", "--configfile", str(tmp_path / "c.yaml"),
         "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)],
        capture_output=True, text=True, env=cli_env, timeout=120,
    )  # fmt: skip
    assert p.returncode != 0
    assert "data.local: the glob" in p.stderr + p.stdout and "none-*.jsonl" in p.stderr + p.stdout
    assert kept.read_bytes() == b"data"


def test_study_overrides_scales_and_condition_seeds():
    from speedlab.config import condition_seeds, planned_seeds

    c = cfg()
    c["studies"]["wide"] = {
        "baseline": "a",
        "seeds": [1, 2],
        "overrides": {"model.d_model": 256, "train.steps": 500},
        "scales": {"smoke": {"train.steps": 7}, "tiny": {"model.n_layer": 1}},
        "condition_seeds": {"b": [5, 6, 7]},
        "planned_seeds": 10,
        "conditions": {"a": {}, "b": {"optim.momentum": 0.9}},
    }
    c["scale"] = "smoke"
    validate(c)
    a = run_config(c, "wide", "a")
    # the study's smoke entry replaces the top-level one (whose d_model 64 does not apply)
    assert a["model"]["d_model"] == 256 and a["train"]["steps"] == 7
    assert run_config(c, "quickstart", "uniform")["model"]["d_model"] == 64  # top-level smoke
    assert condition_seeds(c["studies"]["wide"], "b") == [5, 6, 7]
    assert condition_seeds(c["studies"]["wide"], "a") == [1, 2]
    assert planned_seeds(c["studies"]["wide"]) == 10
    assert planned_seeds(c["studies"]["quickstart"]) == 3
    with pytest.raises(ConfigError, match="scale: 'tiny' is not one of the presets"):
        validate({**copy.deepcopy(c), "scale": "tiny"})  # quickstart has no `tiny`
    only = copy.deepcopy(c)
    del only["studies"]["quickstart"]
    only["scale"] = "tiny"
    assert run_config(validate(only), "wide", "a")["model"]["n_layer"] == 1


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"run_studies": ["nope"]}, "run_studies"),
        (
            {"studies": {"q": {"baseline": "a", "seeds": [0], "conditions": {"a": {}},
                               "condition_seeds": {"z": [1]}}}},
            "studies.q.condition_seeds.z",
        ),
    ],
)  # fmt: skip
def test_bad_study_selection_names_the_key(edit, key):
    c = cfg()
    for k, v in edit.items():
        if k == "studies":
            c["studies"].update(v)
        else:
            c[k] = v
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert f"  {key}:" in str(e.value)


def test_scale_maps_shrink_what_conditions_set():
    c = cfg()
    c["studies"]["widths"] = {
        "baseline": "w512",
        "seeds": [0],
        "conditions": {"w512": {"model.d_model": 512}, "w1024": {"model.d_model": 1024}},
        "scale_maps": {"smoke": {"model.d_model": {512: 32, 1024: 64}}},
    }
    c["scale"] = "smoke"
    validate(c)
    assert run_config(c, "widths", "w512")["model"]["d_model"] == 32
    assert run_config(c, "widths", "w1024")["model"]["d_model"] == 64
    c["scale"] = None
    assert run_config(c, "widths", "w1024")["model"]["d_model"] == 1024


def test_command_line_values_are_typed_by_the_schema():
    from speedlab.config import apply_command_line

    given = {  # what snakemake's --config makes of `defaults={train: {steps: 10}}` and the like
        "defaults": {"train": {"steps": "10", "max_wallclock_s": "null", "compile": "true"},
                     "optim": {"adam_eps": "1e-9"}},
        "studies": {"quickstart": {"seeds": ["0", "1"],
                                   "conditions": {"layerwise": {"optim.momentum_last": "0.85"}}}},
        "scale": "smoke",
    }  # fmt: skip
    c = cfg()
    update_config(c, copy.deepcopy(given))  # the config snakemake hands the workflow
    with pytest.raises(ConfigError, match="'10' is not of type 'integer'"):
        validate(copy.deepcopy(c))
    apply_command_line(c, given)
    validate(c)
    train = c["defaults"]["train"]
    assert (train["steps"], train["max_wallclock_s"], train["compile"]) == (10, None, True)
    assert c["defaults"]["optim"]["adam_eps"] == 1e-9
    assert c["studies"]["quickstart"]["seeds"] == [0, 1]
    assert run_config(c, "quickstart", "layerwise")["optim"]["momentum_last"] == 0.85


def test_set_entries_override_by_dotted_key():
    from speedlab.config import apply_command_line, load_config

    entries = "defaults.train.steps=12 studies.quickstart.conditions.layerwise.optim.momentum=0.9"
    c = cfg(set=entries)
    apply_command_line(c, {"set": c["set"]})
    assert "set" not in c and c["defaults"]["train"]["steps"] == 12
    assert c["studies"]["quickstart"]["conditions"]["layerwise"]["optim.momentum"] == 0.9
    c = apply_command_line(cfg(), {"set": ["data.corpus=2024", "tokenizer.train_docs=null"]})
    assert c["data"]["corpus"] == "2024" and c["tokenizer"]["train_docs"] is None  # text stays
    c = load_config(REPO, ["config/studies/lr_sweep.yaml"], ["scale=full", "plan.overhead_min=5"])
    assert c["run_studies"] == ["lr_sweep"] and c["plan"]["overhead_min"] == 5


@pytest.mark.parametrize(
    "entry, message",
    [
        ("defaults.train.stepz=10", "defaults.train.stepz: not a config key (nearest: "
                                    "defaults.train.steps; see `speedlab schema`)"),
        ("defaults.optim.momentm=0.9", "nearest: defaults.optim.momentum,"),
        ("studies.quickstart.conditions.layerwise.optim.matrix_lrr=0.1",
         "nearest: studies.quickstart.conditions.layerwise.optim.matrix_lr"),
        ("nothing=1", "the top level has anchors, data, defaults"),
        ("defaults.train.steps=many", "defaults.train.steps: 'many' cannot be read as integer"),
        ("defaults.train.compile=maybe", "'maybe' cannot be read as boolean"),
        ("data.source=s3", "'s3' cannot be read as one of \"hf\", \"local\", \"pretokenized\""),
        ("defaults.train.steps", "'defaults.train.steps': expected dotted.key=value"),
    ],
)  # fmt: skip
def test_a_bad_set_entry_names_the_key(entry, message):
    from speedlab.config import apply_command_line

    with pytest.raises(ConfigError) as e:
        apply_command_line(cfg(), {"set": entry})
    assert str(e.value).startswith("command line:") and message in str(e.value)


def test_a_scale_carries_data_settings_under_the_command_line():
    from speedlab.config import apply_command_line

    c = cfg()
    c["scales"]["smoke"]["data"] = {"corpus": "other", "max_docs": 500}
    smoke = validate(apply_command_line(copy.deepcopy(c), {"scale": "smoke"}))
    assert smoke["data"]["corpus"] == "other" and smoke["data"]["max_docs"] == 500
    assert smoke["data"]["val_docs"] == 100  # the rest of `data` stays
    assert "data" not in run_config(smoke, "quickstart", "uniform")  # not a run setting
    assert validate(apply_command_line(copy.deepcopy(c), {}))["data"]["corpus"] != "other"
    given = {"scale": "smoke", "data": {"source": "local", "local": "x/*.jsonl", "max_docs": 9}}
    local = apply_command_line(copy.deepcopy(c), given)["data"]  # e.g. make run DATA=...
    assert (local["source"], local["max_docs"], local["corpus"]) == ("local", 9, "other")
    c["scales"]["smoke"]["data"] = {"source": "s3"}
    with pytest.raises(ConfigError, match="  data.source: 's3' is not one of"):
        validate(apply_command_line(c, {"scale": "smoke"}))
