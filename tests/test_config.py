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
        (
            {"studies/quickstart/conditions/layerwise": {"optim.split": "modded2410"}},
            "studies.quickstart.conditions.layerwise.optim.split",
        ),
        (
            {"studies/quickstart/conditions/layerwise": {"model.kind": "modded2410"}},
            "studies.quickstart.conditions.layerwise.model.n_kv_head",
        ),
        (
            {"studies/quickstart/trainer": {"kind": "command", "command": "x {nope}"}},
            "studies.quickstart.conditions.uniform.trainer.command",
        ),
        (
            {"studies/quickstart/trainer": {"kind": "command"}},
            "studies.quickstart.conditions.uniform.trainer",
        ),
        (
            {"studies/quickstart/trainer": {"kind": "command", "command": "x", "seed": "-"}},
            "studies.quickstart.conditions.uniform.trainer.seed",
        ),
        (
            {"studies/quickstart/conditions/uniform": {"params": {"lr": [1, 2]}}},
            "studies.quickstart.conditions.uniform.params.lr",
        ),
        (
            {"studies/quickstart/imports": [{"table": "t.txt"}]},
            "studies.quickstart.imports.0.table",
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
        ("defaults.train.compile=maybe",
         "'maybe' cannot be read as one of \"auto\", true, false"),
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


# parameter-golf's train_gpt.py (commit 4908dc46f) defaults -> the speedlab key and value that
# reproduce them; `full` must be exactly this recipe.
TRAIN_GPT_DEFAULTS = {
    "NUM_LAYERS": ("model.n_layer", 9),
    "MODEL_DIM": ("model.d_model", 512),
    "NUM_HEADS": ("model.n_head", 8),
    "NUM_KV_HEADS": ("model.n_kv_head", 4),
    "MLP_MULT": ("model.mlp_mult", 2),
    "ROPE_BASE": ("model.rope_base", 10000.0),
    "QK_GAIN_INIT": ("model.qk_gain_init", 1.5),
    "LOGIT_SOFTCAP": ("model.logit_softcap", 30.0),
    "TIED_EMBED_INIT_STD": ("model.embed_init_std", 0.005),
    "MATRIX_LR": ("optim.matrix_lr", 0.04),
    "SCALAR_LR": ("optim.scalar_lr", 0.04),
    "TIED_EMBED_LR": ("optim.embed_lr", 0.05),
    "MUON_MOMENTUM": ("optim.momentum", 0.95),
    "MUON_MOMENTUM_WARMUP_STEPS": ("optim.momentum_warmup_steps", 500),
    "MUON_MOMENTUM_WARMUP_START": ("optim.momentum_warmup_start", 0.85),
    "MUON_BACKEND_STEPS": ("optim.ns_steps", 5),
    "BETA1": ("optim.adam_beta1", 0.9),
    "BETA2": ("optim.adam_beta2", 0.95),
    "ADAM_EPS": ("optim.adam_eps", 1e-8),
    "WARMDOWN_ITERS": ("optim.warmdown_iters", 1200),
    "ITERATIONS": ("train.steps", 20000),
    "TRAIN_SEQ_LEN": ("train.seq_len", 1024),
    "MAX_WALLCLOCK_SECONDS": ("train.max_wallclock_s", 600.0),
    "VAL_LOSS_EVERY": ("train.val_every", 1000),
    "TRAIN_LOG_EVERY": ("train.log_every", 200),
    "WARMUP_STEPS": ("train.compile_warmup_steps", 20),  # compile warm-up, undone
}
# The rest of train_gpt.py's recipe, as speedlab spells it.
PARAMETER_GOLF_RECIPE = {
    "train.batch_seqs": 512,  # TRAIN_BATCH_TOKENS 524,288 / 1,024
    "train.val_tokens": 0,  # the whole val split
    "train.data_order": "parameter_golf",
    "train.arithmetic": "parameter_golf",
    "train.compile": "auto",
    "optim.warmup_steps": 0,
    "optim.warmdown": "parameter_golf",
    "optim.grad_clip": None,  # GRAD_CLIP_NORM 0
    "optim.weight_decay": 0.0,
    "optim.matrix_optimizer": "muon",
    "model.kind": "gpt",  # tied embeddings (TIE_EMBEDDINGS 1)
    "model.vocab_size": None,  # the tokenizer's: VOCAB_SIZE 1024
    "quant.scheme": "parameter_golf",
}


@pytest.mark.parametrize("scale, gpus", [("full", 8), ("full1gpu", 1)])
def test_full_scale_is_train_gpt_defaults(scale, gpus, probe_here):
    from speedlab.config import flatten

    c = validate(cfg(scale=scale))
    assert c["tokenizer"]["vocab_size"] == 1024
    for condition in c["studies"]["quickstart"]["conditions"]:
        run = flatten(run_config(c, "quickstart", condition))
        for var, (key, value) in TRAIN_GPT_DEFAULTS.items():
            if not (var == "MUON_MOMENTUM" and condition == "layerwise"):
                assert run[key] == value, (var, key)
        assert {k: run[k] for k in PARAMETER_GOLF_RECIPE} == PARAMETER_GOLF_RECIPE
        # 8 // WORLD_SIZE accumulation steps of 512 / 8 = 64 sequences, as train_gpt.py
        assert (run["train.gpus"], run["train.micro_batch_seqs"]) == (gpus, 64)
        assert run["train.batch_seqs"] // gpus // run["train.micro_batch_seqs"] == 8 // gpus
    assert c["plan"]["step_time_s"][scale] == pytest.approx(0.04354 * (8 // gpus), rel=1e-3)


def test_train_gpt_defaults_are_those_of_the_reference_checkout():
    """When reference/parameter-golf is there, its train_gpt.py still has these defaults."""
    import re

    script = REPO / "reference" / "parameter-golf" / "train_gpt.py"
    if not script.exists():
        pytest.skip("no reference/parameter-golf checkout")
    text = script.read_text()
    for var, (_, value) in TRAIN_GPT_DEFAULTS.items():
        found = re.search(rf'os\.environ\.get\("{var}", "?([0-9._e-]+)"?\)', text)
        assert found and float(found.group(1).replace("_", "")) == pytest.approx(value), var
    assert re.search(r'"TRAIN_BATCH_TOKENS", 524_288', text) and '"VOCAB_SIZE", 1024' in text


def test_preset_vocabularies_match_the_official_shards():
    from speedlab.config import PRESET_TOKENIZER, PRESET_VOCAB
    from speedlab.data.pretokenized import PRESETS

    assert {name: spec.vocab_size for name, spec in PRESETS.items()} == PRESET_VOCAB
    assert {name: spec.name for name, spec in PRESETS.items()} == PRESET_TOKENIZER


def test_gpu_runs_get_a_micro_batch_and_cpu_runs_keep_none(probe_here):
    c = validate(cfg(scale="modded124m"))  # 12 x 768, vocab 50304: 512 sequences cannot fit
    micro = run_config(c, "quickstart", "uniform")["train"]["micro_batch_seqs"]
    assert 512 % micro == 0 and 1 <= micro < 512
    assert run_config(validate(cfg()), "quickstart", "uniform")["train"]["micro_batch_seqs"] is None


def test_a_gpu_run_that_cannot_fit_is_refused_naming_the_condition_and_keys(probe_here):
    c = cfg(scale="full", **{"execution/gpu_mem_gb": 16})
    for condition in c["studies"]["quickstart"]["conditions"].values():
        condition.update({"model.n_layer": 48, "model.d_model": 2048})
    with pytest.raises(ConfigError) as e:
        validate(c)
    message = str(e.value)
    assert "  studies.quickstart.conditions.uniform: does not fit one GPU even at 1 sequence" in (
        message
    )
    assert "against 16 GB (execution.gpu_mem_gb)" in message
    for key in ("train.seq_len", "model.n_layer / model.d_model", "train.gpus",
                "execution.gpu_mem_gb", "train.micro_batch_seqs"):  # fmt: skip
        assert key in message


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"adaptive": {"looks": [2, 4]}}, r"adaptive.looks: the last look needs 4 seeds"),
        ({"adaptive": {"looks": [3, 2]}, "seeds": [0, 1, 2, 3]}, r"adaptive.looks: \[3, 2\] must"),
        ({"adaptive": {"looks": [2, 3], "futility": True}, "plan": {}}, "futility: needs"),
        ({"adaptive": {"looks": [2, 3]}, "decision": {"rule": "equivalence", "margin": 0.1}},
         "no sequential design"),
        ({"decision": {"rule": "frontier", "against": "nope"}}, r"decision.against: 'nope'"),
        ({"decision": {"rule": "target"}}, r"decision.target: the target rule needs it"),
        ({"design": "paired", "condition_seeds": {"uniform": [7]}}, "design: paired needs"),
        ({"metric": "steps_to_target"}, r"metric: steps_to_target needs .*curve_target"),
    ],
)  # fmt: skip
def test_bad_designs_and_rules_name_their_key(edit, message):
    config = copy.deepcopy(BASE)
    config["studies"]["quickstart"].update(edit)
    with pytest.raises(ConfigError, match=message):
        validate(config)
