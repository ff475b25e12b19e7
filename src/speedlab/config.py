"""The config model: validation against config/schema.yaml and resolution of each run's config.

A run's config is `defaults`, then the active scale preset, then the condition's overrides; the
result is validated again, so a typo in a condition fails as loudly as one in the defaults.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """Raised before any job is planned; the message names the offending key."""


def _with_defaults(validator_class):
    # jsonschema only checks; this fills in `default`s the way snakemake.utils.validate does.
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


@functools.cache
def _parsed_schema(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema (parsed once per process: a big DAG validates thousands of run configs)."""
    return copy.deepcopy(_parsed_schema(Path(path)))


def _check(instance, schema: dict, where: str) -> None:
    errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in (where, *e.absolute_path) if p != "")
            lines.append(f"  {key or '<top level>'}: {e.message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def set_dotted(tree: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {p} is not a mapping")
    node[leaf] = copy.deepcopy(value)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; the inverse of applying set_dotted to every item."""
    flat = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def apply_overrides(base: dict, overrides: dict | None) -> dict:
    merged = copy.deepcopy(base)
    for key, value in flatten(overrides or {}).items():
        set_dotted(merged, key, value)
    return merged


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate the whole tree (filling defaults in place) and every run config it implies."""
    schema = schema or load_schema()
    _check(config, schema, "")
    scale = config.get("scale")
    if scale is not None and scale not in config["scales"]:
        lacking = [
            n for n, st in config["studies"].items() if scale not in (st.get("scales") or {})
        ]
        if lacking:
            raise ConfigError(
                f"  scale: {scale!r} is not one of the presets in `scales` "
                f"{sorted(config['scales'])}, nor in studies.<name>.scales of {lacking}"
            )
    gpu_model = config["execution"]["gpu_model"]
    prices = config["plan"]["gpu_hour_usd"]
    if gpu_model is not None and gpu_model not in prices:
        raise ConfigError(
            f"  execution.gpu_model: {gpu_model!r} has no price in plan.gpu_hour_usd "
            f"(known GPU models: {sorted(prices)})"
        )
    unknown = sorted(set(config.get("run_studies") or []) - set(config["studies"]))
    if unknown:
        raise ConfigError(
            f"  run_studies: {unknown} are not studies (studies: {sorted(config['studies'])})"
        )
    for name, study in config["studies"].items():
        if study["baseline"] not in study_conditions(study):
            raise ConfigError(
                f"  studies.{name}.baseline: {study['baseline']!r} is not one of its conditions "
                f"{sorted(study_conditions(study))}"
            )
        resolved = {
            cond: flatten(run_config(config, name, cond, schema)) for cond in study["conditions"]
        }
        for cond in study["condition_seeds"]:
            if cond not in study["conditions"]:
                raise ConfigError(
                    f"  studies.{name}.condition_seeds.{cond}: not one of its conditions "
                    f"{sorted(study['conditions'])}"
                )
        _check_sweep(name, study, resolved)
        published = study.get("published") or {}
        for field in ("values", "seeds"):
            for cond in published.get(field) or {}:
                if cond not in study_conditions(study):
                    raise ConfigError(
                        f"  studies.{name}.published.{field}.{cond}: not one of its conditions "
                        f"{sorted(study_conditions(study))}"
                    )
    return config


def condition_seeds(study: dict, condition: str) -> list[int]:
    """The seeds a condition is trained with: its own list if it has one, else the study's."""
    return (study.get("condition_seeds") or {}).get(condition, study["seeds"])


def planned_seeds(study: dict) -> int:
    """Seeds per condition the design planned (for 'n planned vs achieved')."""
    listed = max(len(condition_seeds(study, c)) for c in study["conditions"])
    return study.get("planned_seeds") or listed


def study_conditions(study: dict) -> list[str]:
    """The study's conditions: those it trains, then those only its imported logs have."""
    names = list(study["conditions"])
    for item in study.get("imports") or []:
        if item["condition"] not in names:
            names.append(item["condition"])
    return names


def _check_sweep(name: str, study: dict, resolved: dict[str, dict]) -> None:
    sweep = study.get("sweep")
    if not sweep:
        return
    where = f"studies.{name}.sweep"
    for field in ("key", "group"):
        key = sweep.get(field)
        if key is None:
            continue
        for cond, flat in resolved.items():
            if sweep.get("conditions") and cond not in sweep["conditions"]:
                continue
            if key not in flat:
                raise ConfigError(
                    f"  {where}.{field}: {key!r} is not a config key of condition {cond!r} "
                    "(expected a dotted key such as optim.matrix_lr)"
                )
            if not isinstance(flat[key], (int, float)) or isinstance(flat[key], bool):
                raise ConfigError(
                    f"  {where}.{field}: {key!r} is {flat[key]!r} in condition {cond!r}; "
                    "a sweep needs numbers"
                )
    for cond in sweep.get("conditions") or []:
        if cond not in study["conditions"]:
            raise ConfigError(
                f"  {where}.conditions: {cond!r} is not one of the study's conditions "
                f"{sorted(study['conditions'])}"
            )
    if sweep["fit"] and not sweep.get("group"):
        raise ConfigError(f"  {where}.fit: a power-law fit needs sweep.group (the scale key)")


def run_config(config: dict, study: str, condition: str, schema: dict | None = None) -> dict:
    """The fully resolved, validated trainer config of one (study, condition)."""
    schema = schema or load_schema()
    spec = config["studies"][study]
    resolved = apply_overrides(config["defaults"], spec.get("overrides"))
    scale = config.get("scale")
    if scale:
        # A study's own entry for the scale replaces the top-level one of that name.
        own = (spec.get("scales") or {}).get(scale)
        resolved = apply_overrides(resolved, own if own is not None else config["scales"][scale])
    resolved = apply_overrides(resolved, spec["conditions"][condition])
    # A scale may map the values conditions set (e.g. smoke: model.d_model 1280 -> 96), so a
    # study whose conditions differ in shape keeps its structure at a small scale.
    flat = flatten(resolved)
    for key, mapping in ((spec.get("scale_maps") or {}).get(scale) or {}).items():
        by_text = {str(k): v for k, v in mapping.items()}  # YAML int keys, JSON str keys
        if key in flat and str(flat[key]) in by_text:
            set_dotted(resolved, key, by_text[str(flat[key])])
    run_schema = {**schema["$defs"]["run"], "$defs": schema["$defs"]}
    where = f"studies.{study}.conditions.{condition}"
    _check(resolved, run_schema, where)
    # Per-layer lists must match the depth, which the schema alone cannot express.
    n_layer = resolved["model"]["n_layer"]
    for key in ("momentum_list", "lr_mult_list", "wd_mult_list"):
        values = resolved["optim"].get(key)
        if values is not None and len(values) != n_layer:
            raise ConfigError(
                f"invalid configuration:\n  {where}.optim.{key}: {len(values)} values for "
                f"model.n_layer={n_layer} layers"
            )
    if resolved["optim"]["momentum_schedule"] == "list" and not resolved["optim"].get(
        "momentum_list"
    ):
        raise ConfigError(
            f"invalid configuration:\n  {where}.optim.momentum_list: required by "
            "momentum_schedule 'list'"
        )
    return resolved


def config_hash(cfg: dict) -> str:
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
