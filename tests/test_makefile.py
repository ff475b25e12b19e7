"""The Makefile and the command line a user types: DATA and ARGS' --config end up in one
--config, SET overrides settings by dotted key typed by the schema, jobs find the venv's python
without an activated venv, and a catalogue study runs at smoke scale offline.

Each test runs make (or snakemake) in a copy of the checkout whose ../shared is the real one
(the quickstart's offline fallback), with the venv running these tests: VENV points make at
it and `-o` keeps make from reinstalling it from the copy.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FINEWEB_JSONL, REPO, SHARED, smoke_quickstart_config, snakemake_cmd

VENV = Path(sys.executable).parent.parent
CLOSED = "http://127.0.0.1:9"  # nothing listens there: the hub is unreachable
CORPUS = "results/data/fineweb10B-sample"
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.egg-info",
    ".pytest_cache", ".ruff_cache", "reference", "report.html", "tests",
)  # fmt: skip


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(REPO, root / "speedlab", ignore=IGNORE)
    (root / "shared").symlink_to(SHARED)
    return root / "speedlab"


def env(**extra) -> dict:
    return {**os.environ, "HF_ENDPOINT": CLOSED, **extra}


def make(checkout: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-C", str(checkout), f"VENV={VENV}",
           "-o", f"{VENV}/.installed", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)


def output(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


def snakemake_line(checkout: Path, *args: str) -> list[str]:
    """The snakemake command `make -n` prints for `make run ...`, as its words."""
    p = make(checkout, "-n", "run", *args)
    assert p.returncode == 0, output(p)
    (line,) = [x for x in p.stdout.splitlines() if "/snakemake " in x]
    return shlex.split(line)


def train_configs(out: str) -> list[dict]:
    """The run configs of the train commands a dry run with -p prints."""
    found = re.findall(r"speedlab\.train\.loop --config '(\{.*?\})' --seed", out)
    return [json.loads(c) for c in found]


def test_data_joins_the_config_of_args(checkout):
    words = snakemake_line(checkout, f"DATA={FINEWEB_JSONL}", "ARGS=--config scale=smoke -n")
    assert words.count("--config") == 1, words
    at = words.index("--config")
    assert words[at + 1] == f"data={{source: local, local: '{FINEWEB_JSONL}'}}"
    assert words[at + 2 :] == ["scale=smoke", "-n"]
    # no --config in ARGS: DATA and SET make one; --configfile is not a --config
    words = snakemake_line(
        checkout, "DATA=x.jsonl", "SET=defaults.train.steps=10", "ARGS=--configfile c.yaml"
    )
    assert words.count("--config") == 1 and words[-5:-3] == ["--configfile", "c.yaml"]
    items = ["data={source: local, local: 'x.jsonl'}", "set=defaults.train.steps=10"]
    assert words[-3:] == ["--config", *items]
    assert "-C" in snakemake_line(checkout, "SET=scale=smoke", "ARGS=-C a=1")[-3:]


def test_studies_smoke_needs_no_data_override(checkout):
    p = make(checkout, "-n", "studies-smoke")
    assert p.returncode == 0, output(p)
    assert "data=" not in p.stdout
    assert p.stdout.count("--config scale=smoke") == 1  # one loop over the catalogue
    assert "config/studies/$s.yaml" in p.stdout


@pytest.mark.slow
def test_make_run_keeps_data_with_the_config_of_args(checkout):
    p = make(checkout, "run", f"DATA={FINEWEB_JSONL}", "ARGS=--config scale=smoke -n -p")
    out = output(p)
    assert p.returncode == 0, out
    (corpus,) = re.findall(r"speedlab\.data\.documents --data '(\{.*?\})'", out)
    assert json.loads(corpus)["source"] == "local"
    assert json.loads(corpus)["local"] == str(FINEWEB_JSONL)
    configs = train_configs(out)
    assert len(configs) == 6 and {c["train"]["steps"] for c in configs} == {40}  # smoke


@pytest.mark.slow
def test_set_overrides_by_dotted_key_typed_by_the_schema(checkout):
    p = make(checkout, "run", "SET=defaults.train.steps=10 defaults.optim.adam_eps=1e-9",
             "ARGS=-n -p")  # fmt: skip
    assert p.returncode == 0, output(p)
    configs = train_configs(output(p))
    assert {c["train"]["steps"] for c in configs} == {10}
    assert {c["optim"]["adam_eps"] for c in configs} == {1e-9}
    # SET inside the --config of ARGS, into a scale's override mapping
    p = make(checkout, "run", "SET=scales.smoke.train.steps=7", "ARGS=--config scale=smoke -n -p")
    assert {c["train"]["steps"] for c in train_configs(output(p))} == {7}, output(p)


@pytest.mark.slow
def test_snakemake_config_values_are_typed_by_the_schema(checkout):
    base = [str(VENV / "bin" / "snakemake"), "-n", "-p", "--cores", "1", "--config"]
    for item, steps in (("defaults={train: {steps: 10}}", 10), ("set=defaults.train.steps=12", 12)):
        p = subprocess.run([*base, item], cwd=checkout, capture_output=True, text=True, env=env())
        assert p.returncode == 0, output(p)
        assert {c["train"]["steps"] for c in train_configs(output(p))} == {steps}


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, message",
    [
        ("defaults.train.stepz=10", "defaults.train.stepz: not a config key (nearest: "
                                    "defaults.train.steps"),
        ("defaults.train.steps=many", "defaults.train.steps: 'many' cannot be read as integer"),
        ("defaults.train.steps", "'defaults.train.steps': expected dotted.key=value"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_before_any_job(checkout, setting, message):
    p = make(checkout, "run", f"SET={setting}", "ARGS=-n")
    assert p.returncode != 0
    assert message in output(p) and "Traceback" not in output(p), output(p)
    assert not (checkout / "results").exists()


@pytest.mark.slow
def test_jobs_find_the_venv_python_without_an_activated_venv(tmp_path):
    bare = "/usr/bin:/bin"  # no venv on PATH (nor, here, any `python` at all)
    config = smoke_quickstart_config()
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    cmd = snakemake_cmd(tmp_path, "--cores", "1", f"{CORPUS}/train.parquet")
    cmd[0] = str(VENV / "bin" / "snakemake")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(PATH=bare), timeout=300)
    assert p.returncode == 0, output(p)
    record = json.loads((tmp_path / CORPUS / "source.json").read_text())
    assert record["source"] == "local" and record["n_docs"] == 400


@pytest.mark.slow
def test_a_catalogue_study_at_smoke_reads_the_quickstarts_documents_offline(checkout):
    study = "--configfile config/studies/ngpt_alpha.yaml --config scale=smoke"
    p = make(checkout, "run", f"ARGS=-n {study}")
    assert p.returncode == 0, output(p)
    assert "prepare_corpus" in p.stdout and "fetch_pretokenized" not in p.stdout
    assert re.search(r"^train_run\s+36$", p.stdout, re.MULTILINE), p.stdout
    p = make(checkout, "run", f"ARGS={CORPUS}/source.json {study}")
    assert p.returncode == 0 and "Traceback" not in output(p), output(p)
    record = json.loads((checkout / CORPUS / "source.json").read_text())
    assert record["source"] == "offline_fallback" and record["wanted"]["repo"] == (
        "HuggingFaceFW/fineweb"
    )
    # the quickstart's corpus: the quickstart has nothing to redo for it
    p = make(checkout, "run", f"ARGS=-n {CORPUS}/source.json")
    assert "Nothing to be done" in output(p), output(p)


@pytest.mark.slow
def test_official_shards_offline_fail_with_one_clear_line(checkout):
    shards = "results/shards/pretokenized/sp1024/fineweb_val.json"
    p = make(checkout, "run", f"ARGS={shards} --configfile config/studies/ngpt_alpha.yaml")
    out = output(p)
    assert p.returncode != 0
    assert "Traceback" not in out, out
    log = (checkout / "logs/fetch_pretokenized/sp1024.log").read_text()
    (line,) = log.strip().splitlines()[-1:]
    assert line.startswith("fetch_pretokenized: cannot reach the Hugging Face hub at " + CLOSED)
    assert "willdepueoai/parameter-golf" in line and "no offline fallback" in line
    assert "Traceback" not in log
