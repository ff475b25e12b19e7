"""Weights others can load: model.safetensors + config.json from every run, `speedlab export`."""

import json

import numpy as np
import pytest
import torch
from test_train import run, smoke_config

from speedlab.cli import main as cli
from speedlab.data.shards import load_split
from speedlab.train import export
from speedlab.train.validation import evaluate, val_slice


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shards):
    out = tmp_path_factory.mktemp("run")
    run(shards, out, smoke_config(steps=6, val_every=3), seed=3)
    return out


@pytest.mark.parametrize("arithmetic", ["fp32", "parameter_golf"])
def test_the_safetensors_reproduce_the_run_s_val_loss_exactly(
    tmp_path, shards, arithmetic, finished
):
    out = finished
    if arithmetic != "fp32":  # train_gpt.py's bf16 embedding and fp32 matrices
        out = tmp_path / "pg"
        run(shards, out, smoke_config(steps=6, val_every=3, arithmetic=arithmetic), seed=3)
    summary = json.loads((out / "summary.json").read_text())
    model, config = export.load(out)  # a fresh model from the two files alone
    assert config["arithmetic"] == arithmetic and config["tokenizer"]["name"]
    cfg = json.loads((out / "provenance.json").read_text())["config"]["train"]
    tokens = val_slice(load_split(shards / "fineweb_val.json"), cfg["val_tokens"])
    scored = evaluate(model, tokens, np.load(shards / "token_bytes.npy"), cfg["seq_len"],
                      cfg["micro_batch_seqs"] or cfg["batch_seqs"])  # fmt: skip
    assert scored["val_loss"] == summary["val_loss"]
    assert scored["val_bpb"] == summary["val_bpb"]


def test_speedlab_export_writes_the_pair_and_the_tokenizer(tmp_path, finished, shards):
    tokenizer = tmp_path / "sp.model"
    tokenizer.write_bytes(b"a tokenizer model")
    assert cli(["export", str(finished), str(tmp_path / "out"), "--tokenizer", str(tokenizer)]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["config.json", "model.safetensors", "sp.model"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tokenizer"] == {"name": "sp.model", "path": "sp.model"}
    a, _ = export.load(tmp_path / "out")
    b, _ = export.load(finished)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_export_of_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no model.pt"):
        export.main([str(tmp_path), str(tmp_path / "out")])


def test_a_folder_that_is_not_speedlab_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2"]}))
    with pytest.raises(ValueError, match="not a speedlab weights config"):
        export.load(tmp_path)


def test_every_model_kind_round_trips(tmp_path):
    """gpt, ngpt and modded2410 (its tok_emb.weight is also the head) rebuild from the pair."""
    for kind in ("gpt", "ngpt", "modded2410"):
        cfg = smoke_config()
        cfg["model"].update(kind=kind, n_kv_head=cfg["model"]["n_head"])
        model = export.build_model(cfg["model"], 64)
        config = export.weights_config(cfg, 64, {"name": None, "path": None})
        export.write_weights(model, config, tmp_path / kind)
        loaded, _ = export.load(tmp_path / kind)
        want, got = model.state_dict(), loaded.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_missing_tokenizer_file_is_refused_naming_it(tmp_path, finished):
    with pytest.raises(SystemExit, match=r"--tokenizer .*nowhere.model: no such file"):
        export.main(
            [str(finished), str(tmp_path / "out"), "--tokenizer", str(tmp_path / "nowhere.model")]
        )
    assert not (tmp_path / "out" / "model.safetensors").exists()
