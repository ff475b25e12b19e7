"""The conda envs match the code: for every rule, the speedlab modules its shell runs, their
transitive imports (module- and function-level, found with ast) and so the third-party packages
they need are exactly what the rule's env file lists; pins agree with pyproject.toml (torch with
the Makefile's pin); every third-party import in src/ is a pyproject dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
# Top-level import name -> (pip distribution, conda-forge package).
PACKAGES = {
    "huggingface_hub": ("huggingface_hub", "huggingface_hub"),
    "httpx2": ("httpx2", "httpx2"),
    "jinja2": ("jinja2", "jinja2"),
    "jsonschema": ("jsonschema", "jsonschema"),
    "markdown": ("markdown", "markdown"),
    "matplotlib": ("matplotlib", "matplotlib-base"),
    "numpy": ("numpy", "numpy"),
    "pandas": ("pandas", "pandas"),
    "pyarrow": ("pyarrow", "pyarrow"),
    "scipy": ("scipy", "scipy"),
    "seaborn": ("seaborn", "seaborn"),
    "statsmodels": ("statsmodels", "statsmodels"),
    "safetensors": ("safetensors", "safetensors"),
    "sentencepiece": ("sentencepiece", "sentencepiece"),
    "tabulate": ("tabulate", "tabulate"),
    "torch": ("torch", "pytorch"),
    "yaml": ("pyyaml", "pyyaml"),
}
# pandas methods that need an optional dependency pandas imports itself.
PANDAS_EXTRAS = {"read_parquet": "pyarrow", "to_parquet": "pyarrow", "to_markdown": "tabulate"}
# Env entries no import asks for: the interpreter, and pip when the env has a pip section.
TOOLS = {"python", "pip"}


def rules() -> dict[str, dict]:
    """Every rule of the workflow: its env file (or None), its shell and whether it has a log."""
    out = {}
    for path in RULE_FILES:
        blocks = re.split(r"^(?=rule \w+:)", path.read_text(), flags=re.MULTILINE)
        for block in blocks:
            m = re.match(r"rule (\w+):", block)
            if not m:
                continue
            block = re.split(r"^\S", block[m.end() :], maxsplit=1, flags=re.MULTILINE)[0]
            conda = re.search(r'^\s+conda:\s+"([^"]+)"', block, re.MULTILINE)
            shell = re.search(r"^\s+shell:\n((?:\s+\".*\"\n?)+)", block, re.MULTILINE)
            out[m.group(1)] = {
                "env": (path.parent / conda.group(1)).resolve() if conda else None,
                "shell": shell.group(1) if shell else None,
                "log": bool(re.search(r"^\s+log:", block, re.MULTILINE)),
            }
    return out


RULES = rules()
SHELL_RULES = sorted(name for name, r in RULES.items() if r["shell"] is not None)


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(node: ast.AST):
    """ast.walk, leaving out `if TYPE_CHECKING:` blocks (never run)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not _type_checking(child):
            yield from _walk(child)


@cache
def direct_imports(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(modules imported anywhere in the file, pandas methods it calls that need an extra)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(SRC).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names, extras = set(), set()
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and node.attr in PANDAS_EXTRAS:
            extras.add(node.attr)
    return frozenset(names - {"__future__"}), frozenset(extras)


def third_party(modules: list[str]) -> set[str]:
    """Top-level third-party modules reached from `modules` (speedlab modules, by name)."""
    seen, todo, found = set(), list(modules), set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                names, extras = direct_imports(path)
                found.update(PANDAS_EXTRAS[e] for e in extras)
                for imported in names:
                    top = imported.split(".")[0]
                    if top == "speedlab":
                        todo.append(imported)
                    elif top not in sys.stdlib_module_names:
                        found.add(top)
    return found


def rule_modules(shell: str) -> list[str]:
    """The modules a rule's shell runs with `-m`, its launcher's included."""
    modules = re.findall(r"-m (speedlab(?:\.\w+)+)", shell)
    if "{params.launcher}" in shell:  # train_launcher in common.smk: python, or torchrun
        common = (REPO / "rules" / "common.smk").read_text()
        launcher = re.search(r"^def train_launcher\(.*?(?=^\S)", common, re.M | re.S).group(0)
        modules += re.findall(r"python -m ([\w.]+)", launcher)
    return modules


def env_entries(path: Path) -> dict[str, str]:
    """Package -> version spec ('' when unpinned) of an env file, its pip section included."""
    doc = yaml.safe_load(path.read_text())
    entries = {}
    for dep in doc["dependencies"]:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec)
            entries[m.group(1).lower()] = m.group(2).replace(" ", "")
    return entries


def pyproject_deps() -> dict[str, str]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = {}
    for spec in doc["project"]["dependencies"]:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec)
        deps[m.group(1).lower().replace("-", "_")] = m.group(2).replace(" ", "")
    return deps


def test_every_rule_runs_speedlab_in_a_named_env_with_a_log():
    assert len(SHELL_RULES) >= 14, RULES
    for name in SHELL_RULES:
        rule = RULES[name]
        assert rule["env"] is not None, f"rule {name} names no conda env"
        assert rule["env"].parent == REPO / "envs" and rule["env"].exists(), (name, rule["env"])
        assert rule["log"], f"rule {name} has no log"
        assert rule_modules(rule["shell"]), f"rule {name} runs no speedlab module"
    assert {name for name, r in RULES.items() if r["shell"] is None} == {"all"}


def rule_needs(name: str) -> set[str]:
    """The conda-forge packages the modules of rule `name` import."""
    modules = rule_modules(RULES[name]["shell"])
    for module in modules:
        assert not module.startswith("speedlab.") or module_file(module), (name, module)
    imported = third_party(modules) | {m.split(".")[0] for m in modules} - {"speedlab"}
    unknown = imported - set(PACKAGES)
    assert not unknown, f"rule {name} imports {unknown}: add them to PACKAGES with their names"
    return {PACKAGES[m][1] for m in imported}


@pytest.mark.parametrize("name", SHELL_RULES)
def test_the_rule_env_has_every_package_the_rule_imports(name):
    env = RULES[name]["env"]
    lacking = rule_needs(name) - set(env_entries(env))
    assert not lacking, f"rule {name}: {env.relative_to(REPO)} lacks {sorted(lacking)}"


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_the_env_lists_nothing_its_rules_do_not_import(env):
    users = [name for name in SHELL_RULES if RULES[name]["env"] == env]
    assert users, f"no rule uses {env.name}"
    used = set().union(*map(rule_needs, users))
    unused = set(env_entries(env)) - TOOLS - used
    assert not unused, f"{env.name} lists {sorted(unused)}, which none of {users} imports"


def test_analysis_rules_never_reach_torch():
    for name in SHELL_RULES:
        if any(m.startswith("speedlab.analysis.") for m in rule_modules(RULES[name]["shell"])):
            assert "torch" not in third_party(rule_modules(RULES[name]["shell"])), name


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_match_pyproject_and_the_makefile(env):
    entries, deps = env_entries(env), pyproject_deps()
    conda_to_pip = {conda: pip for pip, conda in PACKAGES.values()}
    torch_pin = re.search(r"^TORCH \?= torch(\S+)", (REPO / "Makefile").read_text(), re.M)
    doc = yaml.safe_load(env.read_text())
    assert doc["channels"] == ["conda-forge"], env
    has_pip = any(isinstance(d, dict) for d in doc["dependencies"])
    assert ("pip" in entries) == has_pip, f"{env.name}: pip is listed iff there is a pip section"
    for package, spec in entries.items():
        if package in TOOLS:
            continue
        if package == "pytorch":
            assert spec == torch_pin.group(1), (env.name, spec, "Makefile", torch_pin.group(0))
            continue
        pip = conda_to_pip[package]
        assert spec == deps[pip], f"{env.name}: {package}{spec}, pyproject: {pip}{deps[pip]}"


def test_every_third_party_import_in_src_is_a_pyproject_dependency():
    modules = [
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in (SRC / "speedlab").rglob("*.py")
    ]
    imported = third_party(modules)
    assert imported <= set(PACKAGES), imported - set(PACKAGES)
    deps = pyproject_deps()
    missing = sorted(PACKAGES[m][0] for m in imported if PACKAGES[m][0] not in deps)
    assert not missing, f"pyproject.toml [project] dependencies lack {missing}"


def test_the_walk_follows_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The import walk itself, on a small package: a function-level import of a module whose
    module-level import is third-party, a relative import, and a TYPE_CHECKING-only import."""
    pkg = tmp_path / "speedlab" / "x"
    pkg.mkdir(parents=True)
    (tmp_path / "speedlab" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "def f():\n    from speedlab.x import b\n    return b\n"
        "from . import c\n"
    )
    (pkg / "b.py").write_text("import yaml\n")
    (pkg / "c.py").write_text("import pandas as pd\ndef g(t):\n    return pd.read_parquet(t)\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    direct_imports.cache_clear()
    try:
        assert third_party(["speedlab.x.a"]) == {"yaml", "pandas", "pyarrow"}
    finally:
        direct_imports.cache_clear()
