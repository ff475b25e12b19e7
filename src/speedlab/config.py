"""The config model: the schema, the command line, validation and the resolution of each run.

A run's config is `defaults`, then the active scale preset, then the condition's overrides; the
result is validated again, so a typo in a condition fails as loudly as one in the defaults.
Defaults live in config/schema.yaml only: validation fills them in, so code reads a validated
config by key, never with `.get(key, default)`.

The command line is typed by the schema. Snakemake reads nested `--config` values as strings
(`defaults={train: {steps: 10}}` gives '10'), so apply_command_line turns each into the type
its key documents, and applies `set` entries: space-separated `dotted.key=value` overrides
(`make run SET='defaults.train.steps=10'`, `snakemake --config set='defaults.train.steps=10'`;
Snakemake itself refuses dotted keys). It also merges the chosen scale's `data` settings into
`data`, under what the command line sets.

GPU runs (train.gpus > 0) are fitted to one GPU here, before any job: run_config sets a null
train.micro_batch_seqs to the largest that fits execution.gpu_mem_gb by the memory plan
(speedlab.train.memory), and validate refuses a run that cannot fit even one sequence, naming
the condition, the numbers and the keys to change. CPU-only configs never load the planner.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import difflib
import functools
import json
import textwrap
from pathlib import Path

import jsonschema
import yaml

from speedlab.files import config_hash  # noqa: F401 - re-exported: speedlab.config.config_hash

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
# Mappings of dotted keys into `defaults` (conditions, scales, study overrides).
OVERRIDES = ("#/$defs/overrides", "#/$defs/scale")
RUN = {"$ref": "#/$defs/run"}


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
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER


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


# --- trees -------------------------------------------------------------------------------------


def merge(base: dict, extra: dict) -> dict:
    """Merge `extra` into `base` in place, mappings key by key (as Snakemake merges configs)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _set_path(tree: dict, parts: list[str], value, merging: bool = False) -> None:
    """Set tree[p0][p1]...= value (merging mappings key by key when `merging`)."""
    node = tree
    for p in parts[:-1]:
        if node.get(p) is None or isinstance(node[p], str):
            node[p] = {}  # a null or named default (trainer.source, log_format) takes a mapping
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts)}: {p} is not a mapping")
    if merging:
        merge(node, {parts[-1]: value})
    else:
        node[parts[-1]] = copy.deepcopy(value)


def set_dotted(tree: dict, key: str, value) -> None:
    _set_path(tree, key.split("."), value)


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


# --- the schema as a map of keys ---------------------------------------------------------------


def _resolve(schema: dict, node: dict) -> dict:
    """The node with its local $ref (and theirs) merged in."""
    while "$ref" in node:
        target = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _child(schema: dict, node: dict, name: str) -> dict | None:
    node = _resolve(schema, node)
    if name in node.get("properties", {}):
        return node["properties"][name]
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _unknown_key(schema: dict, node: dict, parts: list[str]) -> str:
    choices = sorted(_resolve(schema, node).get("properties", {}))
    parent = ".".join(parts[:-1])
    near = difflib.get_close_matches(parts[-1], choices, n=3, cutoff=0.6)
    if near:
        hint = "nearest: " + ", ".join(".".join(filter(None, (parent, n))) for n in near)
    elif choices:
        hint = f"{parent or 'the top level'} has {', '.join(choices)}"
    else:
        hint = f"{parent} has no documented keys below it"
    return f"{'.'.join(parts)}: not a config key ({hint}; see `speedlab schema`)"


def _walk(schema: dict, node: dict, parts: list[str], done: list[str]) -> dict:
    for i, part in enumerate(parts):
        child = _child(schema, node, part)
        if child is None:
            raise ConfigError(_unknown_key(schema, node, [*done, *parts[: i + 1]]))
        node = child
    return node


def locate(schema: dict, parts: list[str]) -> tuple[dict, list[str]]:
    """The schema node of a config key (given as its parts) and the path it is stored at: inside
    a mapping of overrides (a condition, a scale) the rest is one dotted key, as YAML writes it.
    ConfigError names the key and the nearest documented ones when there is no such key."""
    node = schema
    for i, part in enumerate(parts):
        own = _resolve(schema, node).get("properties", {})
        if node.get("$ref") in OVERRIDES and part not in own:
            rest = ".".join(parts[i:])
            return _walk(schema, RUN, rest.split("."), parts[:i]), [*parts[:i], rest]
        node = _walk(schema, node, [part], parts[:i])
    return node, list(parts)


def _fits(value, node: dict, schema: dict) -> bool:
    """Whether the value has the type the node documents (its bounds are validate's job)."""
    node = _resolve(schema, node)
    if "enum" in node or "const" in node:
        return value in node.get("enum", [node.get("const")])
    alternatives = node.get("oneOf", []) + node.get("anyOf", [])
    if alternatives:
        return any(_fits(value, alt, schema) for alt in alternatives)
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    return not types or any(_TYPES.is_type(value, t) for t in types)


def _readings(value):
    """What a command-line value may mean: YAML's reading first, the text itself last."""
    if not isinstance(value, str):
        yield value
        if not isinstance(value, (dict, list)):
            yield str(value)
        return
    with contextlib.suppress(yaml.YAMLError):
        yield yaml.safe_load(value)
    for kind in (int, float):  # YAML reads 1e-3 as text
        with contextlib.suppress(ValueError):
            yield kind(value)
    yield value


def _type_value(value, node: dict, schema: dict, key: str):
    """The value as the type the schema gives its key; ConfigError if it has none of them."""
    resolved = _resolve(schema, node)
    if isinstance(value, list) and "items" in resolved and _fits(value, node, schema):
        return [_type_value(v, resolved["items"], schema, key) for v in value]
    for reading in _readings(value):
        if _fits(reading, node, schema):
            return reading
    raise ConfigError(f"{key}: {value!r} cannot be read as {describe_type(node, schema)}")


def describe_type(node: dict, schema: dict) -> str:
    node = _resolve(schema, node)
    if "enum" in node:
        return "one of " + ", ".join(map(json.dumps, node["enum"]))
    if "const" in node:
        return f"exactly {json.dumps(node['const'])}"
    alternatives = node.get("oneOf", []) + node.get("anyOf", [])
    if alternatives:
        return " or ".join(describe_type(alt, schema) for alt in alternatives)
    types = node.get("type", "any")
    names = [types] if isinstance(types, str) else list(types)
    if "array" in names and "items" in node:
        names[names.index("array")] = f"array of {describe_type(node['items'], schema)}"
    bounds = [f"{sign} {node[k]}" for k, sign in _BOUNDS.items() if k in node]
    return "|".join(names) + (f" ({', '.join(bounds)})" if bounds else "")


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def documented_keys(schema: dict | None = None) -> list[tuple[str, dict, bool]]:
    """(dotted key, node, required) of every key the schema documents, in its order; mappings
    of names read `<name>`, `defaults` lists the trainer's keys (what overrides may set)."""
    schema = schema or load_schema()
    rows: list[tuple[str, dict, bool]] = []

    def walk(node: dict, prefix: str) -> None:
        node = _resolve(schema, node)
        required = set(node.get("required", []))
        for name, sub in node.get("properties", {}).items():
            rows.append((prefix + name, sub, name in required))
            walk(sub, f"{prefix}{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and _resolve(schema, extra).get("properties"):
            walk(extra, f"{prefix}<name>.")

    walk(schema, "")
    return rows


def schema_lines(prefix: str = "", schema: dict | None = None) -> list[str]:
    """`speedlab schema`: each documented key with its type, default and description."""
    schema = schema or load_schema()
    lines = []
    for key, node, required in documented_keys(schema):
        if not key.startswith(prefix):
            continue
        facts = [describe_type(node, schema)]
        if "default" in node:
            facts.append(f"default {json.dumps(node['default'])}")
        elif required:
            facts.append("required")
        lines.append(f"{key}  {', '.join(facts)}")
        description = _resolve(schema, node).get("description")
        if description:
            lines += textwrap.wrap(description, 96, initial_indent="    ", subsequent_indent="    ")
    return lines


# --- the command line --------------------------------------------------------------------------


def _typed_tree(tree: dict, schema: dict, path: list[str]) -> dict:
    """A --config tree with every value of a documented key typed by the schema (the rest is
    left to validate, which names it)."""
    out = {}
    for key, value in tree.items():
        parts = [*path, str(key)]
        try:
            node, _ = locate(schema, parts)
        except ConfigError:
            out[key] = value
            continue
        if isinstance(value, dict):
            out[key] = _typed_tree(value, schema, parts)
        else:
            out[key] = _type_value(value, node, schema, ".".join(parts))
    return out


def _set_entries(entries, schema: dict) -> list[tuple[list[str], object]]:
    """`set` (a string of space-separated entries, or a list) -> (storage path, typed value)."""
    if entries is None:
        return []
    items = entries.split() if isinstance(entries, str) else entries
    out = []
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: expected dotted.key=value")
        node, path = locate(schema, key.split("."))
        out.append((path, _type_value(text, node, schema, key)))
    return out


def apply_command_line(config: dict, given: dict | None = None, schema: dict | None = None):
    """Snakemake's merged config as the command line means it, in place (before validate).

    `given` is what --config said (workflow.config_settings.config): its values are typed by
    the schema, its `set` entries applied; then the chosen scale's `data` settings are merged
    into `data`, and what the command line set for `data` on top of them again.
    """
    schema = schema or load_schema()
    try:
        given = _typed_tree(dict(given or {}), schema, [])
        for path, value in _set_entries(given.pop("set", None), schema):
            _set_path(given, path, value, merging=True)
    except ConfigError as e:
        raise ConfigError(f"command line:\n  {e}") from None
    config.pop("set", None)
    merge(config, given)
    # Not validated yet, so keys may be missing; validate checks what this reads.
    scale, scales = config.get("scale"), config.get("scales")
    entry = scales.get(scale) if isinstance(scales, dict) and isinstance(scale, str) else None
    if isinstance(entry, dict) and isinstance(entry.get("data"), dict):
        merge(config.setdefault("data", {}), entry["data"])
        merge(config, {"data": given.get("data", {})})
    return config


def load_config(root: Path, configfiles=(), items=()) -> dict:
    """The config snakemake would see: root/config/config.yaml, each --configfile merged on top,
    then the --config items (KEY=VALUE, dotted keys allowed, typed by the schema)."""
    config: dict = {}
    for path in [Path(root) / "config" / "config.yaml", *map(Path, configfiles)]:
        try:
            merge(config, yaml.safe_load(path.read_text()) or {})
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
    return apply_command_line(config, {"set": list(items)} if items else {})


# --- validation --------------------------------------------------------------------------------


def _check_scale(config: dict) -> None:
    scale = config["scale"]
    if scale is None or scale in config["scales"]:
        return
    lacking = [n for n, st in config["studies"].items() if scale not in st["scales"]]
    if lacking:
        raise ConfigError(
            f"  scale: {scale!r} is not one of the presets in `scales` "
            f"{sorted(config['scales'])}, nor in studies.<name>.scales of {lacking}"
        )


def _check_selection(config: dict) -> None:
    gpu_model = config["execution"]["gpu_model"]
    prices = config["plan"]["gpu_hour_usd"]
    if gpu_model is not None and gpu_model not in prices:
        raise ConfigError(
            f"  execution.gpu_model: {gpu_model!r} has no price in plan.gpu_hour_usd "
            f"(known GPU models: {sorted(prices)})"
        )
    unknown = sorted(set(config["run_studies"] or []) - set(config["studies"]))
    if unknown:
        raise ConfigError(
            f"  run_studies: {unknown} are not studies (studies: {sorted(config['studies'])})"
        )


def _check_names(where: str, names, allowed) -> None:
    for name in names:
        if name not in allowed:
            raise ConfigError(f"  {where}.{name}: not one of its conditions {sorted(allowed)}")


def _check_study(config: dict, name: str, study: dict, schema: dict) -> None:
    _check_runs(name, study)
    try:
        conditions = study_conditions(study)
    except (ValueError, OSError) as e:
        raise ConfigError(f"  studies.{name}.imports: {e}") from None
    if study["baseline"] not in conditions:
        raise ConfigError(
            f"  studies.{name}.baseline: {study['baseline']!r} is not one of its conditions "
            f"{sorted(conditions)}"
        )
    resolved = {c: flatten(run_config(config, name, c, schema)) for c in study["conditions"]}
    _check_names(f"studies.{name}.condition_seeds", study["condition_seeds"], study["conditions"])
    _check_sweep(name, study, resolved)
    _check_decision(name, study)
    _check_hellaswag_metric(name, study, resolved)
    _check_adaptive(name, study)
    if study["published"]:
        for field in ("values", "seeds"):
            _check_names(f"studies.{name}.published.{field}", study["published"][field], conditions)


def _measure_gpu_runs(config: dict, schema: dict) -> None:
    """Measure every GPU run's model shape that is not cached yet in one probe (one torch start
    for the whole config, instead of one per shape), before the runs are fitted one by one."""
    runs = []
    for name, study in config["studies"].items():
        for condition in study["conditions"]:
            resolved = _checked_run(config, name, condition, schema)
            if resolved["train"]["gpus"] > 0 and not is_command(resolved):
                runs.append((resolved, tokenizer_vocab(config)))
    if runs:
        from speedlab.train import memory

        try:
            memory.measure(runs)
        except ValueError as e:
            raise ConfigError(f"invalid configuration:\n  GPU memory plan: {e}") from None


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate the whole tree (filling defaults in place) and every run config it implies,
    GPU runs included: each must fit one GPU by the memory plan."""
    schema = schema or load_schema()
    _check(config, schema, "")
    _check_scale(config)
    _check_selection(config)
    _measure_gpu_runs(config, schema)
    for name, study in config["studies"].items():
        _check_study(config, name, study, schema)
    return config


def condition_seeds(study: dict, condition: str) -> list[int]:
    """The seeds a condition is trained with: its own list if it has one, else the study's."""
    return study["condition_seeds"].get(condition, study["seeds"])


def planned_seeds(study: dict, imported: list[dict] = ()) -> int:
    """Seeds per condition the design planned (for 'n planned vs achieved'); a study made only
    of imports: as many as its most-seeded arm brings (imported: analysis.imports' items)."""
    listed = [len(condition_seeds(study, c)) for c in study["conditions"]]
    if not listed:
        listed = list(collections.Counter(item["condition"] for item in imported).values())
    return study["planned_seeds"] or max(listed, default=0)


def study_conditions(study: dict) -> list[str]:
    """The study's conditions: those it trains, then those only its imports have."""
    from speedlab.analysis.imports import import_conditions

    names = list(study["conditions"])
    return names + [c for c in import_conditions(study) if c not in names]


def trained_runs(study: dict) -> list[tuple[str, int]]:
    """(condition, seed) of every run the study trains itself."""
    return [(c, s) for c in study["conditions"] for s in condition_seeds(study, c)]


def _check_runs(name: str, study: dict) -> None:
    """Trained conditions need seeds; a study needs runs; imports must not repeat a run."""
    from speedlab.analysis.imports import ImportsError, import_runs

    where = f"studies.{name}"
    unseeded = [c for c in study["conditions"] if not condition_seeds(study, c)]
    if unseeded:
        raise ConfigError(
            f"  {where}.seeds: empty, but the study trains {', '.join(unseeded)}: list the "
            "seeds (or the condition's own in condition_seeds)"
        )
    if not study["conditions"] and not study["imports"]:
        raise ConfigError(f"  {where}: no conditions to train and no imports: nothing to compare")
    try:
        import_runs(name, study, trained_runs(study))
    except (ImportsError, OSError) as e:
        raise ConfigError(f"  {e}") from None


def _check_sweep_key(where: str, key: str, resolved: dict[str, dict]) -> None:
    for cond, flat in resolved.items():
        if key not in flat:
            raise ConfigError(
                f"  {where}: {key!r} is not a config key of condition {cond!r} "
                "(expected a dotted key such as optim.matrix_lr)"
            )
        if not isinstance(flat[key], (int, float)) or isinstance(flat[key], bool):
            raise ConfigError(
                f"  {where}: {key!r} is {flat[key]!r} in condition {cond!r}; a sweep needs numbers"
            )


def _check_sweep(name: str, study: dict, resolved: dict[str, dict]) -> None:
    sweep = study["sweep"]
    if not sweep:
        return
    where = f"studies.{name}.sweep"
    chosen = sweep["conditions"]
    swept = {c: flat for c, flat in resolved.items() if not chosen or c in chosen}
    for field in ("key", "group"):
        if sweep[field] is not None:
            _check_sweep_key(f"{where}.{field}", sweep[field], swept)
    for cond in sweep["conditions"] or []:
        if cond not in study["conditions"]:
            raise ConfigError(
                f"  {where}.conditions: {cond!r} is not one of the study's conditions "
                f"{sorted(study['conditions'])}"
            )
    if sweep["fit"] and not sweep["group"]:
        raise ConfigError(f"  {where}.fit: a power-law fit needs sweep.group (the scale key)")


def _check_decision(name: str, study: dict) -> None:
    """The decision rule resolves (its preset and the keys its rule needs), a frontier names a
    condition, a paired design has shared seeds and a curve metric its curve_target."""
    from speedlab.analysis.decision import resolve_rule

    where = f"studies.{name}"
    try:
        rule = resolve_rule(study["decision"], where=f"{where}.decision")
    except ValueError as e:
        raise ConfigError(f"  {e}") from None
    if rule["rule"] == "frontier" and rule["against"] not in study_conditions(study):
        raise ConfigError(
            f"  {where}.decision.against: {rule['against']!r} is not one of the study's "
            f"conditions {sorted(study_conditions(study))}"
        )
    if study["design"] == "paired" and study["condition_seeds"]:
        raise ConfigError(
            f"  {where}.design: paired needs every condition to run the study's seeds, but "
            f"condition_seeds gives {sorted(study['condition_seeds'])} their own"
        )
    if study["metric"] in ("steps_to_target", "time_to_target") and not study["curve_target"]:
        raise ConfigError(f"  {where}.metric: {study['metric']} needs {where}.curve_target")
    confirm = (study["sweep"] or {}).get("confirm")
    reused = sorted(set((confirm or {}).get("seeds", [])) & set(study["seeds"]))
    if reused:
        raise ConfigError(
            f"  {where}.sweep.confirm.seeds: {reused} are also in {where}.seeds; a "
            "confirmation needs fresh seeds"
        )


def _check_hellaswag_metric(name: str, study: dict, resolved: dict[str, dict]) -> None:
    """metric hellaswag_acc: every condition speedlab trains scores it (eval.hellaswag on, the
    built-in trainer), and no sweep or adaptive design (they assume lower is better)."""
    if study["metric"] != "hellaswag_acc":
        return
    where = f"studies.{name}"
    scored = {c for c, flat in resolved.items() if flat.get("eval.hellaswag.examples")}
    off = [c for c, flat in resolved.items()
           if c not in scored or flat.get("trainer.kind") == "command"]  # fmt: skip
    if off:
        raise ConfigError(
            f"  {where}.metric: hellaswag_acc needs eval.hellaswag (and the built-in trainer) "
            f"in every condition; {sorted(off)} do not score it"
        )
    for key in ("sweep", "adaptive"):
        if study[key]:
            raise ConfigError(f"  {where}.{key}: not supported with metric hellaswag_acc")


def _check_adaptive(name: str, study: dict) -> None:
    """Looks increase, the seeds cover the last look, futility has an effect to plan for."""
    adaptive = study["adaptive"]
    if not adaptive:
        return
    where = f"studies.{name}.adaptive"
    looks = adaptive["looks"]
    if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
        raise ConfigError(f"  {where}.looks: {looks} must increase")
    if len(study["seeds"]) < looks[-1]:
        raise ConfigError(
            f"  {where}.looks: the last look needs {looks[-1]} seeds per arm, but "
            f"studies.{name}.seeds lists {len(study['seeds'])}"
        )
    if study["condition_seeds"]:
        raise ConfigError(
            f"  {where}: an adaptive design adds the study's seeds in order; "
            f"studies.{name}.condition_seeds cannot be used with it"
        )
    from speedlab.analysis.decision import SEQUENTIAL_RULES, resolve_rule

    rule = resolve_rule(study["decision"])["rule"]
    if rule not in SEQUENTIAL_RULES:
        raise ConfigError(
            f"  {where}: the {rule} rule (studies.{name}.decision.rule) has no sequential "
            f"design; use one of {', '.join(SEQUENTIAL_RULES)}"
        )
    if adaptive["futility"] and study["plan"].get("min_effect") is None:
        raise ConfigError(
            f"  {where}.futility: needs studies.{name}.plan.min_effect (the effect the "
            "futility bound is computed for)"
        )


def _scale_overrides(config: dict, spec: dict, scale: str) -> dict:
    """A study's own entry for the scale, else the top-level one (its `data` is not a run's)."""
    own = spec["scales"].get(scale)
    entry = own if own is not None else config["scales"][scale]
    return {k: v for k, v in (entry or {}).items() if k != "data"}


def _resolve_run(config: dict, study: str, condition: str) -> dict:
    spec = config["studies"][study]
    resolved = apply_overrides(config["defaults"], spec["overrides"])
    resolved = apply_overrides(resolved, {"trainer": spec["trainer"]})
    scale = config["scale"]
    if scale:
        resolved = apply_overrides(resolved, _scale_overrides(config, spec, scale))
    resolved = apply_overrides(resolved, spec["conditions"][condition])
    # A scale may map the values conditions set (e.g. smoke: model.d_model 1280 -> 96), so a
    # study whose conditions differ in shape keeps its structure at a small scale.
    flat = flatten(resolved)
    for key, mapping in (spec["scale_maps"].get(scale) or {}).items():
        by_text = {str(k): v for k, v in mapping.items()}  # YAML int keys, JSON str keys
        if key in flat and str(flat[key]) in by_text:
            set_dotted(resolved, key, by_text[str(flat[key])])
    return resolved


def _check_layers(resolved: dict, where: str) -> None:
    """Per-layer lists must match the depth, which the schema alone cannot express."""
    n_layer, optim = resolved["model"]["n_layer"], resolved["optim"]
    for key in ("momentum_list", "lr_mult_list", "wd_mult_list"):
        if optim[key] is not None and len(optim[key]) != n_layer:
            raise ConfigError(
                f"invalid configuration:\n  {where}.optim.{key}: {len(optim[key])} values for "
                f"model.n_layer={n_layer} layers"
            )
    _check_record_model(resolved, where)
    if optim["momentum_schedule"] == "list" and not optim["momentum_list"]:
        raise ConfigError(
            f"invalid configuration:\n  {where}.optim.momentum_list: required by "
            "momentum_schedule 'list'"
        )


# Vocabulary of each official shard preset (speedlab.data.pretokenized.PRESETS, whose download
# code the config must not import; tests/test_config.py checks that the two agree).
PRESET_VOCAB = {"sp1024": 1024, "gpt2": 50257}
# and the vocabulary file each places next to its shards (PRESETS[..].name).
PRESET_TOKENIZER = {"sp1024": "fineweb_1024_bpe.model", "gpt2": "vocab.json"}


def _check_record_model(resolved: dict, where: str) -> None:
    """model.kind and optim.split modded2410 go together (the record's optimizers assume its
    parameters, and its model has no grouped-query attention): refused here, not at run time."""
    model, optim = resolved["model"], resolved["optim"]
    kind, split = model["kind"] == "modded2410", optim["split"] == "modded2410"
    if split and not kind:
        raise ConfigError(
            f"invalid configuration:\n  {where}.optim.split: modded2410 needs model.kind "
            f"modded2410 (the record's model), not {model['kind']!r}"
        )
    if kind and model["n_kv_head"] != model["n_head"]:
        raise ConfigError(
            f"invalid configuration:\n  {where}.model.n_kv_head: model.kind modded2410 has no "
            f"grouped-query attention: n_kv_head ({model['n_kv_head']}) must equal n_head "
            f"({model['n_head']})"
        )


def tokenizer_vocab(config: dict) -> int:
    """The vocabulary the runs' shards are tokenized with (a model may pad its embedding)."""
    data = config["data"]
    if data["source"] == "pretokenized":
        return PRESET_VOCAB[data["pretokenized"]["preset"]]
    return config["tokenizer"]["vocab_size"]


def _fit_gpu(config: dict, resolved: dict, where: str) -> None:
    """GPU runs: train.micro_batch_seqs, if null, becomes the largest that fits one GPU by the
    memory plan (speedlab.train.memory); a run that cannot fit is refused here, before any job.
    Only GPU runs import the planner (and it keeps torch in a subprocess)."""
    from speedlab.train import memory

    try:
        resolved["train"]["micro_batch_seqs"] = memory.choose_micro_batch(
            resolved,
            vocab_size=tokenizer_vocab(config),
            gpu_mem_gb=memory.gpu_mem_gb(config["execution"]),
        )
    except ValueError as e:
        raise ConfigError(f"invalid configuration:\n  {where}: {e}") from None


def run_config(config: dict, study: str, condition: str, schema: dict | None = None) -> dict:
    """The fully resolved, validated trainer config of one (study, condition); a GPU run's
    train.micro_batch_seqs is filled in by the memory plan when it is null."""
    schema = schema or load_schema()
    resolved = _checked_run(config, study, condition, schema)
    if resolved["train"]["gpus"] > 0 and not is_command(resolved):
        _fit_gpu(config, resolved, f"studies.{study}.conditions.{condition}")
    return resolved


def _checked_run(config: dict, study: str, condition: str, schema: dict) -> dict:
    resolved = _resolve_run(config, study, condition)
    where = f"studies.{study}.conditions.{condition}"
    _check(resolved, {**schema["$defs"]["run"], "$defs": schema["$defs"]}, where)
    _check_layers(resolved, where)
    _set_horizon(config, resolved, where)
    if is_command(resolved) and resolved["train"]["nodes"] > 1:
        raise ConfigError(
            f"invalid configuration:\n  {where}.train.nodes: {resolved['train']['nodes']} nodes "
            "need speedlab's own trainer (srun + torchrun across nodes); a command trainer's "
            "script runs once, on one node"
        )
    if is_command(resolved):
        from speedlab.train.external import check_templates

        try:
            check_templates(resolved)
        except ValueError as e:
            raise ConfigError(f"invalid configuration:\n  {where}.{e}") from None
    return resolved


def _set_horizon(config: dict, resolved: dict, where: str) -> None:
    """train.target_flops or train.tokens_per_param, when set, replace train.steps (from the
    model's parameters and FLOPs per token, speedlab.train.flops), so that the trainer, the
    plan and the runtimes all see the steps; refused for a command trainer, whose model
    speedlab's keys do not describe."""
    t = resolved["train"]
    keys = [k for k in ("target_flops", "tokens_per_param") if t[k] is not None]
    if not keys:
        return
    if is_command(resolved):
        raise ConfigError(
            f"invalid configuration:\n  {where}.train.{keys[0]}: sizes speedlab's own model; "
            "a command trainer's model is its script's: pass the script its own horizon"
        )
    from speedlab.train.flops import horizon_steps

    try:
        t["steps"] = horizon_steps(resolved, tokenizer_vocab(config))
    except ValueError as e:
        raise ConfigError(f"invalid configuration:\n  {where}.{e}") from None


def is_command(resolved: dict) -> bool:
    """The run is trained by the user's own script (trainer.kind: command)."""
    return resolved["trainer"]["kind"] == "command"
