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
PYTHON_PATH = (
    ""
    if USE_CONDA
    else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {PYTHON_PATH}"
)

from speedlab.config import (
    ConfigError,
    PRESET_TOKENIZER,
    is_command,
    tokenizer_vocab,
    flatten,
    apply_command_line,
    condition_seeds,
    planned_seeds,
    run_config,
    study_conditions,
    trained_runs,
    validate,
)
from speedlab.plan import (
    array_rules,
    array_runtime_minutes,
    finished_runs,
    runtime_minutes,
    training_rule,
)
from speedlab.analysis.figure_list import FIGURES, PLOTTED, report_figures
from speedlab.analysis.decision import resolve_rule
from speedlab.analysis.sequential import next_runs, seeds_at_look
from speedlab.analysis.imports import import_runs, table_rows
from speedlab.data.documents import corpus_params, local_files
from speedlab.data.hellaswag_format import prepared_path
from speedlab.train.external import needs_data, source_dir_name
from speedlab.train.launch import launcher

try:
    # --config values typed by the schema, `set` entries (dotted keys) applied, the scale's data
    validate(apply_command_line(config, workflow.config_settings.config))
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
# The tokenizer of the shards, for external trainers ({tokenizer}).
TOKENIZER_FILE = (
    f"{SHARDS}/{PRESET_TOKENIZER[config['data']['pretokenized']['preset']]}"
    if PRETOKENIZED
    else f"results/tokenizer/{TOKENIZER}.model"
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
    look=r"\d+",
    corpus=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    vocab=r"\d+",
    split="train|val",
    preset=r"[A-Za-z0-9_-]+",
    figure="|".join(PLOTTED),


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


def hellaswag_input(wildcards):
    """The HellaSwag examples a run scores at its end (eval.hellaswag), or none when it is off."""
    spec = resolved(wildcards.study, wildcards.condition)["eval"]["hellaswag"]
    return {"hellaswag": prepared_path(spec["examples"])} if spec else {}


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
    times the attempt (a retried job gets more time). Submitted as a job array (the profile's
    slurm-array-jobs), every run of the rule asks for the longest (speedlab.plan)."""
    rule_name = training_rule(resolved(wildcards.study, wildcards.condition))
    arrays = array_rules(getattr(workflow.executor_settings, "array_jobs", None))
    if rule_name in arrays or "all" in arrays:
        return array_runtime(rule_name, attempt)
    return runtime_minutes(
        config, wildcards.study, wildcards.condition, attempt, finished()
    )


@functools.cache
def array_runtime(rule_name, attempt):
    try:
        return array_runtime_minutes(config, STUDIES, rule_name, attempt, finished())
    except ConfigError as e:
        raise WorkflowError(str(e)) from None


def run_nodes(wildcards):
    return resolved(wildcards.study, wildcards.condition)["train"]["nodes"]


def train_launcher(wildcards):
    """python, torchrun, or (train.nodes > 1) srun + torchrun: speedlab.train.launch."""
    nodes = run_nodes(wildcards)
    if nodes > 1 and local_run_outside_slurm():
        raise WorkflowError(
            f"studies.{wildcards.study}.conditions.{wildcards.condition}: train.nodes={nodes} "
            "needs SLURM: run it with --profile profiles/slurm, or inside an allocation of "
            f"{nodes} nodes (salloc --nodes {nodes}); a local run is one machine"
        )
    return launcher(nodes, run_gpus(wildcards))


def local_run_outside_slurm():
    """Jobs run here (not a dry run, not the SLURM executor) and not inside a SLURM job."""
    plugin = workflow.executor_plugin
    return (
        plugin is not None
        and workflow.local_exec
        and not workflow.dryrun
        and "SLURM_JOB_ID" not in os.environ
    )


# SLURM resources of a multi-node run: --nodes N; each node's GPUs as GRES (per node, where
# --gpus would count the whole job's); a CPU run asks for one task per node (the plugin's
# --ntasks, which it otherwise sets to 1). One node: none of these (0 / "" add nothing).
def run_gpu_total(wildcards):
    return run_gpus(wildcards) if run_nodes(wildcards) == 1 else 0


def run_gres(wildcards):
    gpus = run_gpus(wildcards)
    if run_nodes(wildcards) == 1 or not gpus:
        return ""
    model = EXECUTION["gpu_model"]
    return f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"


def run_tasks(wildcards):
    nodes = run_nodes(wildcards)
    return nodes if nodes > 1 and not run_gpus(wildcards) else 0


def run_gpu_model(wildcards):
    return (EXECUTION["gpu_model"] or "") if run_nodes(wildcards) == 1 else ""


# The GPU type training jobs ask for, if the config names one (SLURM: --gpus=<model>:<n>).
GPU_MODEL = (
    {"gpu_model": EXECUTION["gpu_model"]} if EXECUTION["gpu_model"] is not None else {}
)


def study_run_files(name):
    """Input function: `name` from every (condition, seed) run of the study; for an adaptive
    study, the runs of the looks its interim analyses asked for (a checkpoint each)."""

    def files(wildcards):
        study = study_of(wildcards)
        if study["adaptive"]:
            pairs = adaptive_runs(wildcards.study, final_look(wildcards.study))
        else:
            pairs = [
                (condition, seed)
                for condition in study["conditions"]
                for seed in condition_seeds(study, condition)
            ]
        return run_paths(wildcards.study, pairs, name)

    return files


def run_paths(study, pairs, name):
    """`name` of each (condition, seed) run: under results/runs/ when speedlab trains it, under
    results/external/ when the user's own script does (trainer.kind: command)."""
    return [f"{run_root(study, c)}/{study}/{c}/seed{s}/{name}" for c, s in pairs]


def run_root(study, condition):
    return (
        "results/external" if is_command(resolved(study, condition)) else "results/runs"
    )


def required_metric(study):
    """The value an external run's log must give: the study metric, or the curve its
    target is read from."""
    spec = config["studies"][study]
    if spec["metric"] in ("steps_to_target", "time_to_target"):
        return spec["curve_target"]["metric"]
    return spec["metric"]


def trainer_dir(source):
    """Where the trainer's source is: the local folder, or its clone in results/trainers/."""
    if source is None:
        return None
    if "path" in source:
        return os.path.expanduser(source["path"])
    return f"results/trainers/{source_dir_name(source)}"


def trainer_inputs(wildcards):
    """The source (its clone, or the local folder and its scripts) and, when a template names
    them, the shards."""
    cfg = resolved(wildcards.study, wildcards.condition)
    files = {}
    folder = trainer_dir(cfg["trainer"]["source"])
    if folder is not None:
        files["source"] = folder
        scripts = sorted(Path(folder).glob("*.py")) if Path(folder).is_dir() else []
        if "path" in cfg["trainer"]["source"] and scripts:
            files["scripts"] = [str(p) for p in scripts]
    if needs_data(cfg):
        files.update(
            train=f"{SHARDS}/fineweb_train.json",
            val=f"{SHARDS}/fineweb_val.json",
            token_bytes=f"{SHARDS}/token_bytes.npy",
        )
    return files


def trainer_paths(wildcards):
    """--source, --data-dir, --tokenizer, --vocab-size of speedlab.train.external run."""
    cfg = resolved(wildcards.study, wildcards.condition)
    folder = trainer_dir(cfg["trainer"]["source"])
    args = ["--source", folder] if folder else []
    if needs_data(cfg):
        args += ["--data-dir", SHARDS, "--tokenizer", TOKENIZER_FILE]
        args += ["--vocab-size", str(tokenizer_vocab(config))]
    return shlex.join(args)


@functools.cache
def trainer_sources():
    """results/trainers/<name> -> the git source it clones, over every run of the config."""
    sources = {}
    for study, spec in config["studies"].items():
        for condition in spec["conditions"]:
            source = resolved(study, condition)["trainer"]["source"]
            if source and "git" in source:
                sources[source_dir_name(source)] = source
    return sources


def trainer_source(name):
    if name not in trainer_sources():
        raise WorkflowError(
            f"results/trainers/{name}: no trainer.source of the config clones it "
            f"(known: {', '.join(trainer_sources()) or 'none'})"
        )
    return trainer_sources()[name]


def look_doc(study, look):
    """The interim analysis of one look (a checkpoint: the DAG waits for it)."""
    path = checkpoints.interim_analysis.get(study=study, look=look).output.doc
    return json.loads(Path(path).read_text())


def adaptive_runs(study, look):
    """(condition, seed) of every run up to `look`: all conditions at the first look's seeds,
    then at each later look the seeds the previous look's analysis asked for."""
    spec = config["studies"][study]
    pairs = [(c, s) for c in spec["conditions"] for s in seeds_at_look(spec, 1)]
    for k in range(2, look + 1):
        for condition, seeds in next_runs(look_doc(study, k - 1)).items():
            pairs += [(condition, s) for s in seeds if (condition, s) not in pairs]
    return pairs


def final_look(study):
    """The look at which every comparison stopped (or the last one)."""
    looks = config["studies"][study]["adaptive"]["looks"]
    for k in range(1, len(looks)):
        if not next_runs(look_doc(study, k)):
            return k
    return len(looks)


def interim_inputs(wildcards):
    """The interim analysis of look k reads the runs up to k and the previous look's analysis."""
    look = int(wildcards.look)
    files = {
        "summaries": run_paths(
            wildcards.study, adaptive_runs(wildcards.study, look), "summary.json"
        )
    }
    files["roundtrips"] = [
        p.replace("summary.json", "roundtrip.json") for p in files["summaries"]
    ]
    if look > 1:
        files["previous"] = (
            f"results/studies/{wildcards.study}/looks/look{look - 1}.json"
        )
    return files


def interim_options(wildcards):
    study = study_of(wildcards)
    look = int(wildcards.look)
    previous = interim_inputs(wildcards).get("previous")
    decision = decision_rule(wildcards.study)
    adaptive = study["adaptive"]
    return options(
        study=wildcards.study,
        baseline=study["baseline"],
        conditions=list(study["conditions"]),
        metric=study["metric"],
        seeds=study["seeds"],
        looks=adaptive["looks"],
        spending=adaptive["spending"],
        futility=adaptive["futility"],
        # Bonferroni over the comparisons: each design runs at alpha / m, so the family
        # keeps alpha whatever look each comparison stops at.
        alpha=decision["alpha"] / n_comparisons(study),
        design=study["design"],
        plan=study["plan"],
        **{
            "rule": decision
        },  # (not a keyword argument: snakefmt reads `rule=` as a rule)
        look=look,
        previous=previous,
    )


def n_comparisons(study):
    """Comparisons of a study's decision rule: every condition but the reference."""
    return max(1, len(study["conditions"]) - 1)


def final_look_doc(wildcards):
    """sequential.json is the analysis of the look the design stopped at."""
    return f"results/studies/{wildcards.study}/looks/look{final_look(wildcards.study)}.json"


@functools.cache
def decision_rule(study):
    """The study's decision rule, its preset expanded (speedlab.analysis.decision)."""
    return resolve_rule(config["studies"][study]["decision"])


@functools.cache
def imported_runs(study):
    """One item per imported (condition, seed) (speedlab.analysis.imports), checked once."""
    spec = config["studies"][study]
    return import_runs(study, spec, trained_runs(spec))


def import_pair(study, item):
    """[runs.parquet, curves.parquet] of one imported log run."""
    stem = f"results/studies/{study}/imported/{item['condition']}/seed{item['seed']}"
    return [f"{stem}.{t}" for t in ("runs.parquet", "curves.parquet")]


def study_import_pairs(wildcards):
    """[runs.parquet, curves.parquet] of each imported log run, in order."""
    items = imported_runs(wildcards.study)
    return [import_pair(wildcards.study, i) for i in items if "log" in i]


def study_import_files(wildcards):
    """Input function: the tables of the study's imported logs."""
    return [path for pair in study_import_pairs(wildcards) for path in pair]


def study_tables(wildcards):
    """The published per-seed tables the study imports (imports: [{table: ...}])."""
    return [e["table"] for e in study_of(wildcards)["imports"] if "table" in e]


def imported_log(wildcards):
    """The imported run a (study, condition, seed) import job reads."""
    for item in imported_runs(wildcards.study):
        if (
            "log" in item
            and item["condition"] == wildcards.condition
            and item["seed"] == int(wildcards.seed)
        ):
            return item
    raise WorkflowError(
        f"studies.{wildcards.study}.imports: no log for condition {wildcards.condition!r} "
        f"seed {wildcards.seed}"
    )


def import_log_args(wildcards):
    """--format and --run of the import job (a spec format travels as JSON)."""
    item = imported_log(wildcards)
    fmt = item["format"]
    args = ["--format", fmt if isinstance(fmt, str) else json.dumps(fmt)]
    if item["run"] is not None:
        args += ["--run", str(item["run"])]
    return shlex.join(args)


def import_settings(wildcards):
    """Per imported runs.parquet: the metrics its entry maps, and whether it may pool."""
    study = wildcards.study
    return {
        import_pair(study, item)[0]: {"metrics": item["metrics"], "pool": item["pool"]}
        for item in imported_runs(study)
        if "log" in item
    }


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


def options(**values):
    """One JSON param holding an analysis module's resolved --options."""
    return json.dumps(values, sort_keys=True)


def collect_options(wildcards):
    study = study_of(wildcards)
    settings = import_settings(wildcards)
    return options(
        study=wildcards.study,
        baseline=study["baseline"],
        imports=study_import_pairs(wildcards),
        pooled=[runs for runs, item in settings.items() if item["pool"]],
        import_metrics={
            r: item["metrics"] for r, item in settings.items() if item["metrics"]
        },
        tables=[
            {
                "table": e["table"],
                "condition": e.get("condition"),
                "pool": e["pool"],
                "study": wildcards.study,
            }
            for e in study["imports"]
            if "table" in e
        ],
        curve_target=study["curve_target"],
    )


def stats_options(wildcards):
    study = study_of(wildcards)
    return options(
        metrics=(
            [study["metric"], "train_time_s"]
            if "train_time_s" in (table_columns(wildcards.study) or {"train_time_s"})
            else [study["metric"]]
        ),
        baseline=study["baseline"],
        conditions=study_conditions(study),
        planned_seeds=planned_seeds(study, imported_runs(wildcards.study)),
        # An adaptive study's arms stop at different looks: pair on the seeds they share.
        design=(
            "paired"
            if study["adaptive"] and study["design"] == "auto"
            else study["design"]
        ),
        decision=decision_rule(wildcards.study),
        plan=study["plan"],
        sequential=sequential_doc(wildcards),
    )


def sequential_doc(wildcards):
    """The adaptive design's final analysis, when the study has one."""
    if study_of(wildcards)["adaptive"]:
        return f"results/studies/{wildcards.study}/sequential.json"
    return None


def stats_inputs(wildcards):
    files = {"runs": f"results/studies/{wildcards.study}/runs.parquet"}
    if sequential_doc(wildcards):
        files["sequential"] = sequential_doc(wildcards)
    return files


# Rules whose statistic is worth following over the validation steps (rule_steps.csv).
STEP_RULES = ("record", "known_sigma", "target")


def has_rule_steps(wildcards):
    """Followed over the steps when the decision has a step reading and the runs have curves
    (of the metric: hellaswag_acc is scored once, at the end)."""
    decided = decision_rule(wildcards.study)["rule"]
    curves = study_of(wildcards)["metric"] != "hellaswag_acc"
    return decided in STEP_RULES and curves and table_columns(wildcards.study) is None


def rule_steps_options(wildcards):
    study = study_of(wildcards)
    return options(
        metric=curve_metric(study),
        **{"rule": decision_rule(wildcards.study)},
        conditions=study_conditions(study),
        baseline=study["baseline"],
        design=study["design"],
    )


def curve_metric(study):
    """The validation curve the step-by-step reading uses (the study metric's own)."""
    metric = study["metric"]
    if metric in ("steps_to_target", "time_to_target"):
        return study["curve_target"]["metric"]
    return metric.removeprefix("q_")


def figure_options(wildcards):
    study = study_of(wildcards)
    return options(
        figure=wildcards.figure,
        conditions=study_conditions(study),
        baseline=study["baseline"],
        palette="sequential" if study["sweep"] else "qualitative",
        sweep_conditions=sweep_conditions(wildcards),
    )


def sweep_conditions(wildcards):
    """The swept conditions in value order, one list per group of a grouped sweep (the
    figures give them a sequential palette, the other conditions grey); None without a sweep.
    """
    study = study_of(wildcards)
    sweep = study["sweep"]
    if not sweep:
        return None
    names = [
        c
        for c in study["conditions"]
        if not sweep["conditions"] or c in sweep["conditions"]
    ]
    value = lambda c, key: flatten(resolved(wildcards.study, c))[key]
    names.sort(key=lambda c: value(c, sweep["key"]))
    if not sweep["group"]:
        return names
    groups = {}
    for c in sorted(names, key=lambda c: value(c, sweep["group"])):
        groups.setdefault(value(c, sweep["group"]), []).append(c)
    return list(groups.values())


def figure_table(wildcards):
    """The table the figure reads (figure_list.PLOTTED): runs.parquet or curves.parquet."""
    return (
        f"results/studies/{wildcards.study}/{PLOTTED[wildcards.figure].table}.parquet"
    )


def sweep_options(wildcards):
    study = study_of(wildcards)
    sweep = study["sweep"]
    keys = ("key", "group", "default", "conditions")
    return options(metric=study["metric"], **{k: sweep[k] for k in keys})


def confirm_seeds(wildcards):
    sweep = study_of(wildcards)["sweep"]
    return (sweep or {}).get("confirm") and sweep["confirm"]["seeds"]


def confirm_picks(study):
    """The best value's and the default's conditions per group (a checkpoint: the runs on the
    confirmation seeds wait for the sweep)."""
    path = checkpoints.pick_confirmation.get(study=study).output.picks
    return json.loads(Path(path).read_text())


def confirm_run_files(wildcards):
    """summary.json of the confirmation runs: best and default, each at the fresh seeds."""
    seeds = confirm_seeds(wildcards)
    picks = confirm_picks(wildcards.study)
    conditions = dict.fromkeys(
        c for pick in picks for c in (pick["best"], pick["default"]) if c
    )
    pairs = [(c, s) for c in conditions for s in seeds]
    return run_paths(wildcards.study, pairs, "summary.json")


def confirm_options(wildcards):
    study = study_of(wildcards)
    sweep = study["sweep"]
    keys = ("key", "group", "default")
    return options(
        metric=study["metric"],
        seeds=sweep["confirm"]["seeds"],
        picks=confirm_picks(wildcards.study),
        **{k: sweep[k] for k in keys},
    )


def scaling_options(wildcards):
    study = study_of(wildcards)
    sweep = study["sweep"]
    return options(
        key=sweep["key"],
        group=sweep["group"],
        metric=study["metric"],
        expect=sweep["expect_exponent"],
    )


def study_figures(wildcards):
    """The report's figures in display order (figure_list.report_figures): the momentum design
    when conditions differ in momentum, the sweep and the scaling fit when declared."""
    study = study_of(wildcards)
    sweep = study["sweep"]
    return report_figures(
        study["metric"],
        momentum=varies_momentum(wildcards),
        sweep=bool(sweep),
        scaling=bool(sweep and sweep["fit"]),
        paired=len(study_conditions(study)) > 1,
        sequential=bool(study["adaptive"]),
        rule_steps=has_rule_steps(wildcards),
        columns=table_columns(wildcards.study),
        compute=has_compute(wildcards),
    )


def has_compute(wildcards):
    """Compute multipliers and the metric against FLOPs: when speedlab trains the baseline
    (its runs know their FLOPs; a command trainer's model is its own)."""
    study = study_of(wildcards)
    baseline = study["baseline"]
    return baseline in study["conditions"] and not is_command(
        resolved(wildcards.study, baseline)
    )


def compute_options(wildcards):
    study = study_of(wildcards)
    metric = curve_metric(study)
    return options(
        metric=metric if metric in ("val_bpb", "val_loss") else "val_bpb",
        baseline=study["baseline"],
        conditions=study_conditions(study),
    )


@functools.cache
def table_columns(study):
    """For a study made only of published tables (no curves, maybe no times), the columns
    they have; None when the study has runs with logs."""
    spec = config["studies"][study]
    if spec["conditions"] or any("log" in e for e in spec["imports"]):
        return None
    return {c for e in spec["imports"] for row in table_rows(e["table"]) for c in row}


def report_inputs(wildcards):
    """Every file the report reads: the tables, the sweep table and scaling fit when declared,
    and its figures."""
    base = f"results/studies/{wildcards.study}"
    sweep = study_of(wildcards)["sweep"]
    files = {
        "runs": f"{base}/runs.parquet",
        "stats": f"{base}/stats.csv",
        "sweep": f"{base}/sweep.csv" if sweep else None,
        "sweep_tests": f"{base}/sweep_tests.csv" if sweep else None,
        "confirm": f"{base}/confirm.csv" if confirm_seeds(wildcards) else None,
        "scaling": f"{base}/scaling.json" if sweep and sweep["fit"] else None,
        "sequential": sequential_doc(wildcards),
        "rule_steps": f"{base}/rule_steps.csv" if has_rule_steps(wildcards) else None,
        "compute": f"{base}/compute.csv" if has_compute(wildcards) else None,
        "source_json": None if PRETOKENIZED else f"results/data/{CORPUS}/source.json",
        "figures": [f"{base}/figures/{name}.png" for name in study_figures(wildcards)],
    }
    return {name: path for name, path in files.items() if path is not None}


def report_options(wildcards):
    """speedlab.analysis.report's --options: the study's settings, the files it reads (as
    report_inputs names them) and the figures' titles."""
    study = study_of(wildcards)
    optional = (
        "sweep",
        "sweep_tests",
        "confirm",
        "scaling",
        "sequential",
        "rule_steps",
        "compute",
    )
    files = {**dict.fromkeys(optional), **report_inputs(wildcards)}
    figures = zip(study_figures(wildcards), files.pop("figures"), strict=True)
    data = {
        "corpus": CORPUS,
        "source": config["data"]["source"],
        "shards": SHARDS,
        "source_json": files.pop("source_json", None),
    }
    return options(
        design=study["design"],
        decision=decision_rule(wildcards.study),
        plan=study["plan"],
        adaptive=study["adaptive"],
        confirm_seeds=confirm_seeds(wildcards) or None,
        data=data,
        study=wildcards.study,
        description=study["description"],
        metric=study["metric"],
        baseline=study["baseline"],
        planned_seeds=planned_seeds(study, imported_runs(wildcards.study)),
        conditions=study["conditions"],
        published=study["published"],
        scale=config["scale"] or "default",
        figures=[{"title": FIGURES[n].title, "path": path} for n, path in figures],
        **files,
    )


# The report's layout, an input of write_report beside its module.
REPORT_TEMPLATE = f"{SRC}/speedlab/analysis/templates/report.md.j2"


def module_code(name):
    """An analysis rule's own module as an input: editing it reruns that rule and what follows
    (training code is deliberately not an input: a plotting fix must not retrain anything).
    """
    return f"{SRC}/speedlab/analysis/{name}.py"


# Experiment trackers (speedlab.train.tracking): the trainers' --tracking settings reach their
# shell lines as $SPEEDLAB_TRACKING, set here in every snakemake process (a SLURM job's
# included: it parses this file again), not as a param. Snakemake reruns a job when its
# params, inputs or shell text change, never for an environment variable: turning a tracker
# on or off, or pointing it at another project, reruns no finished run (nor is it part of
# config_hash).
TRACKING = config["tracking"]
TRACKING_DIR = "results/tracking"
TRACKING_JSON = (
    ""
    if TRACKING["backend"] == "none"
    else json.dumps({**TRACKING, "dir": TRACKING_DIR})
)
os.environ.update(SPEEDLAB_TRACKING=TRACKING_JSON)


def tracking_targets(studies):
    """What `all` wants besides the reports: each study's summary run in the tracker
    (rule track_study), when tracking.backend is set."""
    if TRACKING["backend"] == "none":
        return []
    return [f"results/studies/{study}/tracking.json" for study in studies]


def tracking_options(wildcards):
    """speedlab.analysis.tracked's --options: the tracker settings, the study's metric,
    baseline and conditions (it logs stats.csv's verdicts and the per-seed deltas)."""
    study = study_of(wildcards)
    return options(
        tracking={**TRACKING, "dir": TRACKING_DIR},
        study=wildcards.study,
        metric=study["metric"],
        baseline=study["baseline"],
        conditions=list(study["conditions"]),
    )
