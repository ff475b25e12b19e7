"""eval.hellaswag: the examples from the hub (a loopback hub serving a file the test writes, in
the hub's format), their checks, completion-style scoring against a per-ending brute force, the
Wilson interval against statsmodels', and the score in summary.json and runs.parquet."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
import torch
from statsmodels.stats.proportion import proportion_confint
from test_train import run, smoke_config

from conftest import smoke_quickstart_config
from hub_server import COMMIT, FakeHub, point_client_at
from speedlab.analysis.collect import collect
from speedlab.data import hellaswag, hellaswag_format
from speedlab.data.hub import HubUnreachable
from speedlab.train import hellaswag_eval as he
from speedlab.train.models import build_model

# Hand-written examples in the hub's schema (Rowan/hellaswag: label is a digit string there).
# The right ending repeats the context's last word; the wrong ones are other words.
WRONG = ["sky blue river", "lamp chair window", "green apple road"]
ROWS = [
    {
        "ind": i,
        "activity_label": "Testing",
        "ctx_a": f"Example {i}: the",
        "ctx_b": "",
        "ctx": f"Example {i}: the",
        "endings": [*WRONG[:label], " ".join(["the"] * 8), *WRONG[label:]],
        "source_id": f"test~{i}",
        "split": "val",
        "split_type": "indomain",
        "label": str(label),
    }
    for i, label in enumerate([0, 3, 1, 2, 3])
]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Parsing and its refusals.


def test_rows_become_examples_with_int_labels(tmp_path):
    rows = [ROWS[0], {**ROWS[1], "label": 3}]  # the hub's "3" and the original jsonl's 3
    items = hellaswag_format.read_jsonl(jsonl(tmp_path / "v.jsonl", rows), 2)
    assert [ex.label for ex in items] == [0, 3]
    assert items[1].context == "Example 1: the" and len(items[1].endings) == 4


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"endings": None}, r"example 1: no endings"),
        ({"label": "4"}, r"example 1: label '4' is not an ending index 0-3"),
        ({"label": True}, r"example 1: label True"),
        ({"label": "x"}, r"example 1: label 'x'"),
        ({"endings": ["a", "b", "c"]}, r"example 1: endings should be a list of 4"),
        ({"endings": ["a", "", "c", "d"]}, r"example 1: every ending should be a non-empty"),
        ({"ctx": " "}, r"example 1: ctx"),
    ],
)
def test_a_bad_example_is_named_by_file_and_index(tmp_path, bad, message):
    path = jsonl(tmp_path / "v.jsonl", [ROWS[0], {**ROWS[1], **bad}, ROWS[2]])
    with pytest.raises(ValueError, match=message) as err:
        hellaswag_format.read_jsonl(path, 3)
    assert str(path) in str(err.value)


def test_fewer_examples_than_asked_for_is_an_error(tmp_path):
    path = jsonl(tmp_path / "v.jsonl", ROWS[:2])
    with pytest.raises(ValueError, match=r"holds 2 examples, fewer than the 3 asked for"):
        hellaswag_format.read_jsonl(path, 3)
    assert len(hellaswag_format.read_jsonl(path, 2)) == 2


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"v\.jsonl: example 1 is not JSON"):
        hellaswag_format.read_jsonl(path, 2)


def test_a_missing_prepared_file_names_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val_7\.jsonl.*prepare_hellaswag"):
        hellaswag_format.read_jsonl(tmp_path / hellaswag_format.prepared_path(7), 7)


# Scoring.


@pytest.fixture(scope="module")
def model():
    """The smoke quickstart's GPT at initialisation (every block's output projection is zero, so
    the logits are the final embedding against the tied table)."""
    torch.manual_seed(0)
    return build_model(smoke_config()["model"], 512).eval()


@pytest.fixture(scope="module")
def echo(model):
    """The same model with its embeddings scaled up: it predicts the current token again, so an
    ending that repeats the context's last token is the obvious answer."""
    import copy

    echo = copy.deepcopy(model)
    with torch.no_grad():
        emb = echo.tok_emb.weight
        emb.mul_(20 / (emb.std() * emb.shape[1]))
    return echo


def brute_force(model, ctx: list[int], end: list[int]) -> float:
    """One ending alone, unpadded: the mean of -log p(token | everything before it)."""
    seq = torch.tensor([ctx + end])
    logp = torch.log_softmax(model.logits(seq[:, :-1]).double(), -1)[0]
    targets = seq[0, 1:]
    token_lp = logp[torch.arange(len(targets)), targets]
    return float(-token_lp[-len(end) :].mean().detach())


def test_batched_losses_match_each_ending_scored_alone(model):
    rng = np.random.default_rng(0)
    seqs = [
        (rng.integers(4, 512, size=c).tolist(), rng.integers(4, 512, size=e).tolist())
        for c, e in [(5, 3), (9, 1), (2, 7), (6, 6)]
    ]
    losses = he.ending_losses(model, seqs, seq_len=128)
    expected = [brute_force(model, c, e) for c, e in seqs]
    np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["ngpt", "modded2410"])
def test_every_model_kind_scores_as_its_brute_force(kind):
    cfg = smoke_config()["model"]
    cfg.update(kind=kind, n_kv_head=cfg["n_head"])
    torch.manual_seed(0)
    other = build_model(cfg, 512).eval()
    seqs = [([1, 5, 9, 13], [7, 8]), ([1, 2], [3, 4, 5, 6, 7])]
    expected = [brute_force(other, c, e) for c, e in seqs]
    got = he.ending_losses(other, seqs, seq_len=128).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_long_sequences_lose_their_start(model):
    ctx, end = list(range(4, 40)), [50, 51, 52]
    x, y, mask = he.batch([(ctx, end), ([1, 2], [7])], seq_len=16)
    assert x.shape == (2, 16)
    assert x[0].tolist() == (ctx + end)[-17:-1] and y[0].tolist() == (ctx + end)[-16:]
    assert mask[0].tolist() == [0.0] * 13 + [1.0] * 3
    assert mask[1].tolist() == [0.0, 1.0] + [0.0] * 14  # padded on the right, masked out
    loss = he.ending_losses(model, [(ctx, end)], seq_len=16)
    assert float(loss[0]) == pytest.approx(brute_force(model, ctx[-14:], end), rel=1e-5)


def test_the_echo_model_picks_the_repeating_ending(echo):
    rng = np.random.default_rng(1)
    for trial in range(5):
        ctx = rng.integers(4, 512, size=6).tolist()
        label = trial % 4
        endings = [rng.integers(4, 512, size=5).tolist() for _ in range(4)]
        endings[label] = [ctx[-1]] * 5
        assert he.predict(echo, [(ctx, e) for e in endings], 128) == label


def test_the_echo_model_answers_every_text_example(echo, sp_model, tmp_path):
    # Through the run's tokenizer: the right ending repeats the context's last word "the".
    manifest = tmp_path / "fineweb_train.json"
    manifest.write_text(json.dumps({"tokenizer": sp_model.name, "bos_id": 1}))
    shutil.copy(sp_model, tmp_path / sp_model.name)
    cfg = {"eval": {"hellaswag": {"examples": 5}}, "train": {"seq_len": 128}}
    got = he.maybe_score(echo, cfg, manifest, jsonl(tmp_path / "v.jsonl", ROWS))
    assert got["hellaswag_acc"] == 1.0 and got["hellaswag_n"] == 5


def test_endings_are_tokenized_in_place_after_the_context(sp_model):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    ex = hellaswag_format.example(ROWS[1], "row")
    pairs = he.pairs(sp.encode, 1, ex)
    for (ctx, end), ending in zip(pairs, ex.endings, strict=True):
        assert ctx[0] == 1 and ctx[1:] + end == sp.encode(f"{ex.context} {ending}")
        assert sp.decode(end).strip() == ending


@pytest.mark.parametrize("correct, n", [(0, 10), (3, 10), (10, 10), (2570, 10042), (1, 1)])
def test_the_interval_is_statsmodels_wilson(correct, n):
    got = he.result(correct, n)
    lo, hi = proportion_confint(correct, n, alpha=0.05, method="wilson")
    assert got["hellaswag_acc"] == correct / n and got["hellaswag_n"] == n
    assert got["hellaswag_lo"] == pytest.approx(lo, abs=1e-12)
    assert got["hellaswag_hi"] == pytest.approx(hi, abs=1e-12)


def test_an_off_eval_scores_nothing(model):
    assert he.maybe_score(model, {"eval": {"hellaswag": None}}, None) == {}
    assert he.maybe_score(model, {}, None) == {}


def test_a_tokenizer_that_is_not_sentencepiece_is_refused(tmp_path, model):
    manifest = tmp_path / "fineweb_train.json"
    manifest.write_text(json.dumps({"tokenizer": "vocab.json"}))
    (tmp_path / "vocab.json").write_text("{}")
    cfg = {"eval": {"hellaswag": {"examples": 2}}, "train": {"seq_len": 128}}
    path = jsonl(tmp_path / "v.jsonl", ROWS[:2])
    with pytest.raises(ValueError, match=r"SentencePiece model.*vocab\.json"):
        he.maybe_score(model, cfg, manifest, path)


# The examples from the hub.


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loopback hub serving Rowan/hellaswag's validation file, made of ROWS."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "README.md").write_text("# HellaSwag (a loopback copy for tests)\n")
    pq.write_table(pa.Table.from_pylist(ROWS), repo / hellaswag.FILE)
    with FakeHub() as server:
        server.add_dataset(hellaswag.REPO, repo)
        point_client_at(server, tmp_path, monkeypatch)
        yield server
    assert server.unhandled == [], "the client made requests the loopback hub does not know"


def test_the_examples_come_from_the_hub(hub, tmp_path):
    out = tmp_path / "val_4.jsonl"
    record = hellaswag.prepare(4, out)
    assert record["examples"] == 4 and COMMIT in record["local"]
    items = hellaswag_format.read_jsonl(out, 4)
    assert [ex.context for ex in items] == [r["ctx"] for r in ROWS[:4]]
    assert [ex.label for ex in items] == [int(r["label"]) for r in ROWS[:4]]
    assert [list(ex.endings) for ex in items] == [r["endings"] for r in ROWS[:4]]


def test_more_examples_than_the_file_holds_name_it(hub, tmp_path):
    with pytest.raises(SystemExit, match=r"Rowan/hellaswag@main:data/validation.*holds 5"):
        hellaswag.main(["--examples", "6", "--out", str(tmp_path / "x.jsonl")])
    assert not (tmp_path / "x.jsonl").exists()


def test_a_bad_row_on_the_hub_is_named(hub, tmp_path):
    rows = [ROWS[0], {**ROWS[1], "label": "7"}]
    repo = tmp_path / "bad"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), repo / hellaswag.FILE)
    hub.add_dataset("someone/hellaswag-bad", repo)
    with pytest.raises(ValueError, match=r"hellaswag-bad@main:data/validation.*example 1: label"):
        hellaswag.prepare(2, tmp_path / "x.jsonl", repo="someone/hellaswag-bad")


def test_without_a_hub_it_stops_with_a_clear_error(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(SystemExit, match=r"cannot reach the Hugging Face hub at http://127") as e:
        hellaswag.main(["--examples", "2", "--out", str(tmp_path / "x.jsonl")])
    assert time.monotonic() - start < 5
    assert "Rowan/hellaswag" in str(e.value) and "network" in str(e.value)


def test_a_missing_file_on_the_hub_is_named(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no file data/nope\.parquet"):
        hellaswag.prepare(2, tmp_path / "x.jsonl", file="data/nope.parquet")


def test_once_downloaded_it_is_read_from_the_cache_offline(hub, tmp_path, monkeypatch):
    hellaswag.prepare(2, tmp_path / "a.jsonl")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hellaswag.prepare(3, tmp_path / "b.jsonl")
    assert len(hellaswag_format.read_jsonl(tmp_path / "b.jsonl", 3)) == 3
    with pytest.raises(HubUnreachable):
        hellaswag.prepare(2, tmp_path / "c.jsonl", repo="someone/never-downloaded")


# At the end of a run: summary.json, then runs.parquet.


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, shards, sp_model):
    """A 4-step smoke run with eval.hellaswag on, in a folder laid out like the workflow's."""
    work = tmp_path_factory.mktemp("work")
    (work / "results" / "tokenizer").mkdir(parents=True)
    shutil.copy(sp_model, work / "results" / "tokenizer" / sp_model.name)
    jsonl_path = work / hellaswag_format.prepared_path(5)
    jsonl_path.parent.mkdir(parents=True)
    jsonl(jsonl_path, ROWS)
    cfg = smoke_config(steps=4, val_every=4)
    cfg["eval"] = {"hellaswag": {"examples": 5}}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        summary = run(shards, work / "run", cfg, seed=1)
    return work / "run", summary


def test_the_run_scores_hellaswag_into_its_summary(scored_run):
    out, summary = scored_run
    assert summary["hellaswag_n"] == 5
    assert summary["hellaswag_acc"] in {k / 5 for k in range(6)}
    assert summary["hellaswag_lo"] <= summary["hellaswag_acc"] <= summary["hellaswag_hi"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert {k: on_disk[k] for k in summary if k.startswith("hellaswag")} == {
        k: v for k, v in summary.items() if k.startswith("hellaswag")
    }


def test_the_score_is_a_runs_parquet_column(scored_run, tmp_path):
    out, summary = scored_run
    runs, _ = collect([out / "summary.json"], baseline="c")
    runs.to_parquet(tmp_path / "runs.parquet")
    back = pd.read_parquet(tmp_path / "runs.parquet")
    row = back.iloc[0]
    for key in ("hellaswag_acc", "hellaswag_lo", "hellaswag_hi", "hellaswag_n"):
        assert row[key] == summary[key], key
    assert str(back["hellaswag_n"].dtype) == "Int64" and back["hellaswag_acc"].dtype == float


# hellaswag_acc as a study metric: higher is better.


def acc_runs(arms: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"condition": c, "seed": s, "diverged": False, "source": "speedlab", "hellaswag_acc": v}
        for c, values in arms.items()
        for s, v in enumerate(values)
    ]
    runs = pd.DataFrame(rows)
    runs["neg_acc"] = -runs["hellaswag_acc"]  # the same numbers, lower-is-better
    return runs


ARMS = {
    "base": [0.250, 0.262, 0.244, 0.258, 0.251],
    "up": [0.281, 0.290, 0.276, 0.288, 0.279],
    "down": [0.231, 0.240, 0.226, 0.238, 0.232],
}


@pytest.mark.parametrize(
    "decision, verdicts",
    [
        ({}, {"up": "better", "down": "worse"}),
        ({"rule": "record", "min_delta": 0.02}, {"up": "record", "down": "not a record"}),
        ({"rule": "record", "min_delta": 0.05}, {"up": "not a record", "down": "not a record"}),
        ({"rule": "equivalence", "margin": 0.1}, {"up": "equivalent", "down": "equivalent"}),
    ],
)
def test_a_hellaswag_study_gets_its_stats_higher_is_better(tmp_path, decision, verdicts):
    from speedlab.analysis.stats import write_stats

    runs, conditions = acc_runs(ARMS), list(ARMS)
    table = write_stats(runs, "hellaswag_acc", "base", conditions, 5, tmp_path / "s.csv",
                        out_json=tmp_path / "s.json", decision=decision)  # fmt: skip
    mirror = write_stats(runs, "neg_acc", "base", conditions, 5, tmp_path / "m.csv",
                         decision=decision)  # fmt: skip
    got = table.set_index("condition")
    back = mirror.set_index("condition")
    for cond, word in verdicts.items():
        assert got.loc[cond, "verdict"] == word, cond
        assert got.loc[cond, "verdict"] == back.loc[cond, "verdict"]
        # The same test on the negated numbers: the same p, the interval read back upwards.
        assert got.loc[cond, "p"] == pytest.approx(back.loc[cond, "p"], rel=1e-12)
        assert got.loc[cond, "estimate"] == pytest.approx(-back.loc[cond, "estimate"])
        assert got.loc[cond, "est_low"] == pytest.approx(-back.loc[cond, "est_high"])
        assert got.loc[cond, "est_high"] == pytest.approx(-back.loc[cond, "est_low"])
    assert got.loc["up", "mean"] == pytest.approx(np.mean(ARMS["up"]))  # in accuracy units
    assert got.loc["up", "estimate"] > 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["primary_metric"] == "hellaswag_acc"


def hellaswag_config(metric="hellaswag_acc", examples=20, **study):
    """The smoke quickstart judged by HellaSwag accuracy, the eval on in every condition."""
    config = smoke_quickstart_config()
    quick = config["studies"]["quickstart"]
    quick["metric"] = metric
    if examples:
        quick.setdefault("overrides", {})["eval.hellaswag"] = {"examples": examples}
    quick.update(study)
    return config


def test_a_hellaswag_metric_validates_with_the_eval_on():
    from speedlab.config import run_config, validate

    config = validate(hellaswag_config())
    assert run_config(config, "quickstart", "uniform")["eval"]["hellaswag"] == {"examples": 20}


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"examples": None}, r"quickstart\.metric: hellaswag_acc needs eval\.hellaswag"),
        ({"sweep": {"key": "optim.matrix_lr"}}, r"quickstart\.sweep: not supported"),
    ],
)
def test_a_hellaswag_metric_without_its_eval_is_refused(edit, message):
    from speedlab.config import ConfigError, validate

    with pytest.raises(ConfigError, match=message):
        validate(hellaswag_config(**edit))


@pytest.mark.slow  # snakemake end to end
def test_a_study_judged_by_hellaswag_reaches_its_report(tmp_path, hub, cli_env):
    """The hub's examples prepared once, an input of every run, scored at its end, the
    study's metric in runs.parquet, stats.json and the report."""
    import subprocess

    import yaml

    from conftest import snakemake_cmd

    config = hellaswag_config(examples=5)
    study = config["studies"]["quickstart"]
    study["overrides"]["train.steps"] = 6
    study["seeds"] = [0, 1]
    config["run_studies"] = ["quickstart"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**cli_env, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    p = subprocess.run(snakemake_cmd(tmp_path, "--cores", "2"), capture_output=True, text=True,
                       env=env, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert len(hub.gets(hellaswag.FILE)) == 1  # one download for every run
    out = tmp_path / "results" / "studies" / "quickstart"
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 4 and (runs["hellaswag_n"] == 5).all()
    assert runs["hellaswag_acc"].between(0, 1).all()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["primary_metric"] == "hellaswag_acc"
    report = (out / "report.md").read_text()
    assert "Primary metric: HellaSwag accuracy, higher is better" in report
