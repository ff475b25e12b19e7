"""Plans: what a config still has to train, how long each job needs and what it will cost.

Step time comes from finished runs when there are any (train_time_s / steps of runs with the same
resolved config, else of any run with the same model, batch and GPU count), otherwise from the
config's `plan.step_time_s` for the active scale. From it follow each training job's SLURM
runtime (steps x step time x margin + overhead, times the attempt number on a retry) and the
GPU-hours and money still needed. A run counts as done when its summary exists for the current
config (a run of an edited condition is pending again, as snakemake sees it). Each GPU run
shows its micro-batch and its estimated peak memory per GPU against the GPU's
(speedlab.train.memory); a run that cannot fit has been refused by validation already.
`speedlab plan` (or `make plan`) prints the table before anything is submitted.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from speedlab.config import (
    ConfigError,
    condition_seeds,
    config_hash,
    is_command,
    load_config,
    run_config,
    tokenizer_vocab,
    validate,
)

RUNS = Path("results/runs")
EXTERNAL = Path("results/external")  # runs of external trainer commands (trainer.kind: command)
MEMORY_NOTE = (
    "memory: estimated peak per GPU at micro_batch sequences per forward (speedlab.train.memory: "
    "weights, grads, optimizer state, eager bf16 activations, + 10% and 1.5 GB fixed)"
)


SHAPE_TRAIN_KEYS = ("seq_len", "batch_seqs", "micro_batch_seqs", "gpus", "compile", "device",
                    "arithmetic")  # fmt: skip


def shape_key(cfg: dict) -> str:
    """What sets the step time: the model, the batch and its micro-batches, the GPU count,
    compilation and arithmetic."""
    t = cfg["train"]
    return config_hash(
        {
            "model": cfg["model"],
            "train": {k: t[k] for k in SHAPE_TRAIN_KEYS},
        }
    )


def finished_runs(root: Path = Path(".")) -> list[dict]:
    """(study, condition, seed, config hash, shape, step time) of every finished run."""
    out = []
    summaries = [p for d in (RUNS, EXTERNAL) for p in (root / d).glob("*/*/seed*/summary.json")]
    for summary_path in sorted(summaries):
        prov_path = summary_path.with_name("provenance.json")
        if not prov_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        if not summary.get("steps") or summary.get("diverged"):
            continue
        cfg = json.loads(prov_path.read_text())["config"]
        out.append(
            {
                "study": summary_path.parts[-4],
                "condition": summary_path.parts[-3],
                "seed": int(summary_path.parts[-2].removeprefix("seed")),
                "shape": shape_key(cfg),
                "config_hash": summary["config_hash"],
                "step_s": summary["train_time_s"] / summary["steps"],
            }
        )
    return out


def step_time(config: dict, study: str, condition: str, finished: list[dict]) -> tuple[float, str]:
    """Seconds per training step and where the number came from."""
    cfg = run_config(config, study, condition)
    same = [r["step_s"] for r in finished if r["config_hash"] == config_hash(cfg)]
    if same:
        return sum(same) / len(same), f"measured ({len(same)} runs)"
    alike = [r["step_s"] for r in finished if r["shape"] == shape_key(cfg)]
    if alike:
        return sum(alike) / len(alike), f"measured, same shape ({len(alike)} runs)"
    configured = config["plan"]["step_time_s"]
    scale = config["scale"] or "default"
    if scale in configured:
        return float(configured[scale]), f"plan.step_time_s.{scale}"
    if "default" in configured:
        return float(configured["default"]), "plan.step_time_s.default"
    raise ValueError(
        f"plan.step_time_s has no entry for scale {scale!r} (nor `default`) and no run of "
        f"{study}/{condition} has finished: add one, e.g. plan.step_time_s.{scale}: 0.3"
    )


def train_seconds(cfg: dict, step_s: float) -> float:
    seconds = cfg["train"]["steps"] * step_s
    cap = cfg["train"]["max_wallclock_s"]
    return min(seconds, cap) if cap else seconds


def runtime_minutes(
    config: dict, study: str, condition: str, attempt: int = 1, finished: list[dict] = ()
) -> int:
    """SLURM runtime of one training job: expected time with margin and overhead, x attempt.
    `finished` is finished_runs() (read once by the caller: a DAG asks for every job)."""
    step_s, _ = step_time(config, study, condition, list(finished))
    cfg = run_config(config, study, condition)
    p = config["plan"]
    minutes = train_seconds(cfg, step_s) * p["runtime_margin"] / 60 + p["overhead_min"]
    return max(1, math.ceil(minutes)) * attempt


# SLURM job arrays (profiles/slurm: slurm-array-jobs). snakemake-executor-plugin-slurm 2.8.0
# puts every ready job of a rule into one `sbatch --array` and takes the resources of the
# array's first job for all its tasks (run_array_jobs: "all jobs have the same resource
# requirement"): it never splits an array by runtime or GPUs. So an arrayed training job asks
# for the longest runtime among the runs of its rule, and runs whose GPUs or nodes differ are
# refused before anything is submitted.
ARRAY_SHAPE_KEYS = ("gpus", "nodes")


def array_rules(setting: str | None) -> set[str]:
    """The rule names of the plugin's slurm-array-jobs setting ("a,b" or "a;b"; "all")."""
    return {name.strip() for name in (setting or "").replace(";", ",").split(",") if name.strip()}


def training_rule(cfg: dict) -> str:
    return "run_trainer_command" if is_command(cfg) else "train_run"


def rule_runs(config: dict, studies: list[str], rule: str) -> list[tuple[str, str, dict]]:
    """(study, condition, resolved config) of every condition the rule trains in these studies."""
    runs = [
        (study, condition, run_config(config, study, condition))
        for study in studies
        for condition in config["studies"][study]["conditions"]
    ]
    return [run for run in runs if training_rule(run[2]) == rule]


def _check_shapes(rule: str, runs: list[tuple[str, str, dict]]) -> None:
    shapes = {}
    for study, condition, cfg in runs:
        shape = tuple(cfg["train"][k] for k in ARRAY_SHAPE_KEYS)
        shapes.setdefault(shape, (study, condition))
    if len(shapes) > 1:
        listed = "; ".join(
            f"studies.{s}.conditions.{c}: train.gpus={gpus}, train.nodes={nodes}"
            for (gpus, nodes), (s, c) in shapes.items()
        )
        raise ConfigError(
            f"profiles/slurm slurm-array-jobs: the {rule} runs differ in GPUs or nodes ({listed})"
            ", but the SLURM plugin gives every task of an array its first job's resources. "
            f"Run them in separate snakemake calls, or submit one job per run: drop {rule} from "
            "slurm-array-jobs (--slurm-array-jobs=none)"
        )


def check_array_shapes(config: dict, studies: list[str], rule: str) -> None:
    """Refuse arrayed runs of one rule that differ in train.gpus or train.nodes."""
    _check_shapes(rule, rule_runs(config, studies, rule))


def array_runtime_minutes(
    config: dict, studies: list[str], rule: str, attempt: int = 1, finished: list[dict] = ()
) -> int:
    """One runtime for every arrayed job of the rule: the longest of its runs'."""
    runs = rule_runs(config, studies, rule)
    _check_shapes(rule, runs)
    return max(runtime_minutes(config, s, c, attempt, finished) for s, c, _ in runs)


def gpu_hour_price(config: dict) -> float | None:
    model = config["execution"]["gpu_model"]
    return config["plan"]["gpu_hour_usd"].get(model or "default")


def memory_columns(config: dict, cfg: dict) -> dict:
    """A GPU run's micro-batch and its estimated peak memory per GPU against the GPU's (GB);
    None for CPU runs."""
    if cfg["train"]["gpus"] == 0 or is_command(cfg):  # a script's memory is its own
        return {"micro_batch": None, "peak_gb": None, "gpu_mem_gb": None}
    from speedlab.train import memory

    e = memory.estimate(
        cfg, vocab_size=tokenizer_vocab(config), gpu_mem_gb=memory.gpu_mem_gb(config["execution"])
    )
    return {"micro_batch": e["micro_batch_seqs"], "peak_gb": e["peak_gb"],
            "gpu_mem_gb": e["gpu_mem_gb"]}  # fmt: skip


def plan_table(config: dict, root: Path = Path(".")) -> pd.DataFrame:
    finished = finished_runs(root)
    price = gpu_hour_price(config)
    rows = []
    for study in config["run_studies"] or config["studies"]:
        spec = config["studies"][study]
        for condition in spec["conditions"]:
            cfg = run_config(config, study, condition)
            step_s, source = step_time(config, study, condition, finished)
            current = config_hash(cfg)
            seeds = condition_seeds(spec, condition)
            done = sum(
                (r["study"], r["condition"], r["seed"], r["config_hash"])
                == (study, condition, s, current)
                for r in finished
                for s in seeds
            )
            pending = len(seeds) - done
            hours = train_seconds(cfg, step_s) / 3600
            gpus = cfg["train"]["gpus"] * cfg["train"]["nodes"]  # of every node
            rows.append(
                {
                    "study": study,
                    "condition": condition,
                    "gpus": gpus,
                    **memory_columns(config, cfg),
                    "runs": len(seeds),
                    "done": done,
                    "pending": pending,
                    "step_s": step_s,
                    "step_time_from": source,
                    "hours_per_run": hours,
                    "gpu_hours_pending": pending * hours * gpus,
                    "usd_pending": pending * hours * gpus * price if price is not None else None,
                }
            )
    return pd.DataFrame(rows)


def format_plan(table: pd.DataFrame, config: dict) -> str:
    price = gpu_hour_price(config)
    model = config["execution"]["gpu_model"] or "default"
    memory = [
        "–" if pd.isna(peak) else f"{peak:.1f} / {gpu:g}"
        for peak, gpu in zip(table["peak_gb"], table["gpu_mem_gb"], strict=True)
    ]
    shown = table.assign(
        micro_batch=table["micro_batch"].map(lambda v: "–" if pd.isna(v) else f"{int(v)}"),
        peak_gb=memory,
        step_s=table["step_s"].map("{:.3g}".format),
        hours_per_run=table["hours_per_run"].map("{:.3g}".format),
        gpu_hours_pending=table["gpu_hours_pending"].map("{:,.1f}".format),
        usd_pending=table["usd_pending"].map(lambda v: "–" if v is None else f"${v:,.0f}"),
    ).rename(columns={"peak_gb": "mem_gb (est. / GPU)"})
    lines = [shown.drop(columns="gpu_mem_gb").to_markdown(index=False), ""]
    for study, part in table.groupby("study", sort=False):
        usd = part["usd_pending"].sum() if price is not None else None
        cost = f", ${usd:,.0f}" if usd is not None else ""
        lines.append(
            f"{study}: {int(part['done'].sum())} of {int(part['runs'].sum())} runs done, "
            f"{int(part['pending'].sum())} pending: {part['gpu_hours_pending'].sum():,.1f} "
            f"GPU-hours{cost}"
        )
    rate = f"${price:g}/GPU-hour ({model})" if price is not None else f"no price for {model}"
    lines.append(f"prices: {rate}; GPU-hours count pending runs only")
    if table["peak_gb"].notna().any():
        lines.append(MEMORY_NOTE)
    return "\n".join(lines)


# --- seeds for the smallest effect that matters ---------------------------------------------


def finished_values(root: Path, study: str, metric: str, current: dict) -> pd.DataFrame:
    """(condition, seed, value) of the study's finished runs of each condition's current
    config (current: condition -> config hash; a run of an edited condition measures another
    config's noise): summary.json and roundtrip.json hold every study metric (q_* in
    roundtrip.json) under its runs.parquet name."""
    rows = []
    found = [p for d in (RUNS, EXTERNAL) for p in (root / d / study).glob("*/seed*/summary.json")]
    for summary_path in sorted(found):
        doc = json.loads(summary_path.read_text())
        if doc.get("config_hash") != current.get(summary_path.parts[-3]):
            continue
        roundtrip = summary_path.with_name("roundtrip.json")
        if roundtrip.exists():
            doc = {**json.loads(roundtrip.read_text()), **doc}
        if doc.get(metric) is not None and not doc.get("diverged"):
            seed = int(summary_path.parts[-2].removeprefix("seed"))
            rows.append({"condition": summary_path.parts[-3], "seed": seed, "value": doc[metric]})
    return pd.DataFrame(rows, columns=["condition", "seed", "value"])


def planning_design(spec: dict) -> str:
    """paired or independent: auto pairs when every condition runs the study's seeds."""
    if spec["design"] == "auto":
        return "independent" if spec["condition_seeds"] else "paired"
    return spec["design"]


def noise_sd(spec: dict, values: pd.DataFrame, design: str) -> tuple[float, str]:
    """The noise the plan uses: pooled from finished runs (paired: the sd of the per-seed
    differences from the baseline), else plan.noise_sd (paired: times sqrt(2 (1 - rho)))."""
    base = values[values["condition"] == spec["baseline"]].set_index("seed")["value"]
    spreads, dfs = [], []
    for cond, part in values.groupby("condition"):
        x = part.set_index("seed")["value"]
        if design == "paired" and cond != spec["baseline"]:
            x = (x - base).dropna()
        elif design == "paired":
            continue
        if len(x) >= 2:
            spreads.append(x.var(ddof=1) * (len(x) - 1))
            dfs.append(len(x) - 1)
    if dfs:
        return math.sqrt(sum(spreads) / sum(dfs)), f"pooled from {sum(dfs) + len(dfs)} runs"
    sd = spec["plan"]["noise_sd"]
    if sd is None:
        return float("nan"), "none"
    if design == "paired":
        return sd * math.sqrt(2 * (1 - spec["plan"]["pair_correlation"])), "plan.noise_sd"
    return sd, "plan.noise_sd"


def seeds_lines(config: dict, table: pd.DataFrame, root: Path) -> list[str]:
    """Per study with plan.min_effect: seeds per arm for it under the study's design and rule,
    and what running them costs; with an adaptive design, its maximum and expected cost."""
    from speedlab.analysis.decision import resolve_rule
    from speedlab.analysis.power import seeds_for_effect

    lines = []
    for study, part in table.groupby("study", sort=False):
        spec = config["studies"][study]
        effect = spec["plan"]["min_effect"]
        if effect is None:
            continue
        rule, design = resolve_rule(spec["decision"]), planning_design(spec)
        current = {c: config_hash(run_config(config, study, c)) for c in spec["conditions"]}
        values = finished_values(root, study, spec["metric"], current)
        sd, source = noise_sd(spec, values, design)
        if not math.isfinite(sd):
            lines.append(
                f"{study}: no noise sd to plan with: no finished runs, and "
                f"studies.{study}.plan.noise_sd is not set"
            )
            continue
        if rule["rule"] == "record" and effect <= rule["min_delta"]:
            lines.append(
                f"{study}: a record must be shown beyond decision.min_delta {rule['min_delta']:g};"
                f" plan.min_effect {effect:g} is not beyond it, so no number of seeds shows it"
            )
            continue
        power = spec["plan"]["power"]
        n = seeds_for_effect(effect, sd, design=design, rule=rule, power=power)
        lines.append(
            f"{study}: min_effect {effect:g} ({spec['metric']}), noise sd {sd:.3g} ({source}), "
            f"{rule['rule']} rule at alpha {rule['alpha']:g}, {design}: "
            f"{_seeds(n)} seeds per arm for {power:.0%} power; {_cost(part, n, config)}"
        )
        if spec["adaptive"]:
            beyond = effect - (rule["min_delta"] if rule["rule"] == "record" else 0.0)
            lines.append(_adaptive_line(spec, part, rule, design, beyond / sd, config))
    return ["", "Seeds for the smallest effect that matters:", *lines] if lines else []


def _seeds(n: float) -> str:
    return f"more than {int(1e4):,}" if math.isinf(n) else f"{int(n):,}"


def _cost(part: pd.DataFrame, n: float, config: dict) -> str:
    """GPU-hours (and money) of n seeds of every condition of the study."""
    if not math.isfinite(n):
        return "not affordable"
    gpu_hours = float((part["hours_per_run"] * part["gpus"]).sum() * n)
    run_hours = float(part["hours_per_run"].sum() * n)
    price = gpu_hour_price(config)
    usd = f", ${gpu_hours * price:,.0f}" if price is not None and gpu_hours else ""
    return f"{gpu_hours:,.1f} GPU-hours{usd} ({run_hours:,.1f} run-hours)"


def _adaptive_line(spec, part, rule, design, effect_over_sd, config) -> str:
    from speedlab.analysis.sequential import expected_seeds

    a = spec["adaptive"]
    e = expected_seeds(
        tuple(a["looks"]), a["spending"], design, rule, a["futility"], effect_over_sd,
        rule["alpha"] / max(1, len(spec["conditions"]) - 1), power=spec["plan"]["power"],
    )  # fmt: skip
    return (
        f"  adaptive looks {a['looks']} ({a['spending']}): at most {_cost(part, e['max'], config)};"
        f" expected {_cost(part, e['expected_h0'], config)} with no effect and "
        f"{_cost(part, e['expected_h1'], config)} at min_effect"
    )


def main(argv: list[str] | None = None, prog: str = "python -m speedlab.plan") -> None:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--configfile", nargs="+", action="extend", default=[], type=Path, metavar="FILE",
        help="config files merged over config/config.yaml, as snakemake --configfile does",
    )  # fmt: skip
    p.add_argument(
        "--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="settings by (dotted) key, typed by the schema: scale=full defaults.train.steps=10",
    )  # fmt: skip
    p.add_argument("--config-json", help="the whole config as JSON (what the plan rule passes)")
    p.add_argument("--root", type=Path, default=Path("."), help="the workflow's directory")
    args = p.parse_args(argv)
    try:
        if args.config_json:
            config = json.loads(args.config_json)
        else:
            config = load_config(args.root, args.configfile, args.config)
        table = plan_table(validate(config), args.root)
    except ValueError as e:  # a ConfigError, or no step time to plan with
        raise SystemExit(f"{prog}: {e}") from None
    print("\n".join([format_plan(table, config), *seeds_lines(config, table, args.root)]))


if __name__ == "__main__":
    main()
