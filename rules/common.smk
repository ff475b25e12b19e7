import functools
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

# Jobs run `python -m speedlab...`: make the package importable from this checkout in every job
# (plain venv, conda env or SLURM job) without relying on an editable install.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
# Without --use-conda, jobs run the interpreter that runs Snakemake (the venv's, activated or
# not): its directory goes first on PATH. The prefix replaces Snakemake's own, so it restates
# `set -euo pipefail`: a Python error inside `| tee` must fail the job. (The prefix goes through
# str.format like every shell command, hence the doubled braces.)
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON_PATH = "" if USE_CONDA else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {PYTHON_PATH}"
)

from speedlab.config import (
    ConfigError,
    condition_seeds,
    planned_seeds,
    run_config,
    study_conditions,
    validate,
)
from speedlab.plan import finished_runs, runtime_minutes
from speedlab.data.documents import corpus_params, local_files

try:
    validate(config)
except ConfigError as e:
    raise WorkflowError(
        f"config ({', '.join(map(str, workflow.configfiles))}): {e}"
    ) from None

# A glob that matches nothing fails here, before any job (and any deletion of old outputs).
if config["data"]["source"] == "local":
    try:
        local_files(config["data"].get("local") or [])
    except (FileNotFoundError, ValueError) as e:
        raise WorkflowError(str(e)) from None


STUDIES = config["run_studies"] or list(config["studies"])
CORPUS = config["data"]["corpus"]
TOKENIZER = f"{CORPUS}_sp{config['tokenizer']['vocab_size']}"
PRETOKENIZED = config["data"]["source"] == "pretokenized"
SHARDS = (
    f"results/shards/pretokenized/{config['data']['pretokenized']['preset']}"
    if PRETOKENIZED
    else f"results/shards/{TOKENIZER}"
)
EXECUTION = config["execution"]
# Cluster execution has no local core count: then up to 8 of this host's.
try:
    LOCAL_CORES = workflow.cores
except WorkflowError:
    LOCAL_CORES = min(os.cpu_count() or 1, 8)
TOKENIZE_THREADS = EXECUTION["tokenize_threads"] or LOCAL_CORES or 1


wildcard_constraints:
    study=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    condition=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    seed=r"\d+",
    corpus=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    vocab=r"\d+",
    split="train|val",
    preset=r"[A-Za-z0-9_-]+",
    metric="val_bpb|val_loss|train_loss|q_val_bpb|q_val_loss|train_time_s|compressed_bytes",
    x="step|tokens|time_s",


def study_of(wildcards):
    if wildcards.study not in config["studies"]:
        raise WorkflowError(
            f"study {wildcards.study!r} is not in the config (studies: {', '.join(config['studies'])})"
        )
    return config["studies"][wildcards.study]


def run_config_json(wildcards):
    """The resolved trainer config of one condition: a param, so editing it reruns its runs."""
    study = study_of(wildcards)
    if wildcards.condition not in study["conditions"]:
        raise WorkflowError(
            f"studies.{wildcards.study}: no condition {wildcards.condition!r} "
            f"(conditions: {', '.join(study['conditions'])})"
        )
    return json.dumps(resolved(wildcards.study, wildcards.condition), sort_keys=True)


@functools.cache
def resolved(study, condition):
    """run_config once per condition: input functions ask for it for every job of a big DAG."""
    return run_config(config, study, condition)


@functools.cache
def finished():
    """Finished runs (for measured step times), read once per snakemake invocation."""
    return finished_runs()


def run_gpus(wildcards):
    return resolved(wildcards.study, wildcards.condition)["train"]["gpus"]


def train_threads(wildcards):
    """CPU runs: execution.train_threads; GPU runs: execution.cpus_per_gpu per GPU."""
    gpus = run_gpus(wildcards)
    return gpus * EXECUTION["cpus_per_gpu"] if gpus else EXECUTION["train_threads"]


def train_runtime(wildcards, attempt):
    """Minutes for SLURM: expected training time x plan.runtime_margin + plan.overhead_min,
    times the attempt (a retried job gets more time)."""
    return runtime_minutes(
        config, wildcards.study, wildcards.condition, attempt, finished()
    )


def train_launcher(wildcards):
    gpus = run_gpus(wildcards)
    if gpus <= 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc-per-node={gpus}"


# The GPU type training jobs ask for, if the config names one (SLURM: --gpus=<model>:<n>).
GPU_MODEL = (
    {"gpu_model": EXECUTION["gpu_model"]} if EXECUTION["gpu_model"] is not None else {}
)


def study_run_files(name):
    """Input function: `name` from every (condition, seed) run of the study."""

    def files(wildcards):
        study = study_of(wildcards)
        return [
            f"results/runs/{wildcards.study}/{condition}/seed{seed}/{name}"
            for condition in study["conditions"]
            for seed in condition_seeds(study, condition)
        ]

    return files


def study_import_files(wildcards):
    """Input function: (runs, curves) parquet pairs of the study's imported logs, in order."""
    return [
        f"results/studies/{wildcards.study}/imported/{item['condition']}/seed{item['seed']}.{t}"
        for item in study_of(wildcards)["imports"]
        for t in ("runs.parquet", "curves.parquet")
    ]


def imported_log(wildcards):
    """The `imports` entry a (study, condition, seed) import job reads."""
    for item in study_of(wildcards)["imports"]:
        if item["condition"] == wildcards.condition and item["seed"] == int(
            wildcards.seed
        ):
            return item
    raise WorkflowError(
        f"studies.{wildcards.study}.imports: no log for condition {wildcards.condition!r} "
        f"seed {wildcards.seed}"
    )


def study_condition_list(wildcards):
    """Trained and imported conditions, comma-separated, in the config's order."""
    return ",".join(study_conditions(study_of(wildcards)))


def varies_momentum(wildcards):
    """Whether the study's conditions differ in their per-layer Muon momentum."""
    study = study_of(wildcards)
    keys = (
        "momentum_schedule",
        "momentum",
        "momentum_first",
        "momentum_last",
        "momentum_list",
    )
    designs = set()
    for condition in study["conditions"]:
        o = resolved(wildcards.study, condition)["optim"]
        design = tuple(json.dumps(o.get(k)) for k in keys)
        if o["momentum_schedule"] == "uniform":
            design = ("uniform", o["momentum"])
        designs.add(design)
    return len(designs) > 1


def sweep_outputs(wildcards):
    """write_report's optional inputs: the momentum design figure when conditions differ in
    momentum, the sweep table/figure and the scaling fit when declared."""
    sweep = study_of(wildcards)["sweep"]
    base = f"results/studies/{wildcards.study}"
    files = {}
    if varies_momentum(wildcards):
        files["momentum_figure"] = f"{base}/figures/momentum_per_layer.png"
    if sweep:
        files.update(
            sweep=f"{base}/sweep.csv", sweep_figure=f"{base}/figures/sweep.png"
        )
    if sweep and sweep["fit"]:
        files.update(
            scaling=f"{base}/scaling.json", scaling_figure=f"{base}/figures/scaling.png"
        )
    return files


def sweep_options(sweep, expect=False):
    """Command-line options of speedlab.analysis.sweep (or, with expect, speedlab.analysis.scaling)."""
    if expect:
        value = sweep["expect_exponent"]
        return "" if value is None else f"--expect={value}"
    options = (
        [] if sweep["group"] is None else [f"--group {shlex.quote(sweep['group'])}"]
    )
    if sweep["default"] is not None:
        options.append(f"--default={sweep['default']}")
    if sweep["conditions"]:
        options.append(f"--conditions={','.join(sweep['conditions'])}")
    return " ".join(options)


def report_options(input):
    """speedlab.analysis.report's --sweep/--scaling options for the optional inputs write_report got."""
    options = []
    if "momentum_figure" in input.keys():
        figure = input["momentum_figure"]
        options.append(f"--figure {shlex.quote(f'Momentum per layer={figure}')}")
    for name in ("sweep", "scaling"):
        if name in input.keys():
            options.append(f"--{name} {shlex.quote(input[name])}")
            figure = input[f"{name}_figure"]
            title = "Sweep" if name == "sweep" else "Scaling fit"
            options.append(f"--figure {shlex.quote(f'{title}={figure}')}")
    return " ".join(options)


def module_code(name):
    """An analysis rule's own module as an input: editing it reruns that rule and what follows
    (training code is deliberately not an input: a plotting fix must not retrain anything).
    """
    return f"{SRC}/speedlab/analysis/{name}.py"


def study_param(key):
    def value(wildcards):
        v = study_of(wildcards)[key]
        return ",".join(map(str, v)) if isinstance(v, (list, dict)) else v

    return value
