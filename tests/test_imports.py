"""Import boundaries (DESIGN.md): train never imports analysis or the download code, analysis
never imports torch, and no speedlab module imports one that imports it back.

The graph is read from the source with ast, imports inside functions included (a lazy import is
still an import once that function runs); imports under `if TYPE_CHECKING:` never run and are left
out. Importing `a.b.c` also runs the package `__init__`s of `a` and `a.b`, so the reachability
checks follow those too; the cycle check uses the import statements as written.
"""

import ast
from functools import cache
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
DOWNLOAD = (
    "speedlab.data.hub",
    "speedlab.data.pretokenized",
    "huggingface_hub",
    "httpx2",
    "fsspec",
)


def module_files(src: Path) -> dict[str, Path]:
    """Every module under `src`, by dotted name (a package is its `__init__`)."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST):
    """Import statements anywhere in `tree`, except under `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules `name` (at `path`) imports; `from X import Y` names X.Y when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
        target = ".".join([*base, *([node.module] if node.module else [])])
        subs = {f"{target}.{alias.name}" for alias in node.names} & known
        out.update(subs or {target})
        if len(subs) < len(node.names):
            out.add(target)
    return out


@cache
def graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the modules it imports (speedlab's and third-party ones, by full dotted name)."""
    files = module_files(src)
    return {name: imported_names(name, path, set(files)) for name, path in files.items()}


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def reach(start: str, edges: dict[str, set[str]], bad) -> list[str] | None:
    """The shortest import chain from `start` to a module for which `bad` holds, or None.

    Only modules in `edges` are followed; importing one also runs its parent packages, so those
    count as its imports.
    """
    seen, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for module in frontier:
            runs = [p for p in parents(module) if p in edges] + sorted(edges.get(module, ()))
            for target in runs:
                if target in seen:
                    continue
                seen[target] = module
                if bad(target):
                    chain = [target]
                    while seen[chain[-1]] is not None:
                        chain.append(seen[chain[-1]])
                    return chain[::-1]
                nxt.append(target)
        frontier = nxt
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One chain per import cycle among the modules in `edges` (Tarjan's strongly connected
    components; a component of two or more modules, or a module importing itself, is a cycle)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v] & edges.keys()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or v in edges[v]:
                found.append(cycle_chain(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def cycle_chain(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A chain start -> ... -> start inside one strongly connected component."""
    start, inside = component[0], set(component)
    sub = {m: edges[m] & inside for m in component}
    back = {start} if start in sub[start] else set()
    if back:
        return [start, start]
    prev, frontier = {start: None}, [start]
    while frontier:
        module = frontier.pop(0)
        for target in sorted(sub[module]):
            if target == start:
                chain = [module]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return [*chain[::-1], start]
            if target not in prev:
                prev[target] = module
                frontier.append(target)
    raise AssertionError(f"{component} is not strongly connected")


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every broken boundary, as an import chain."""

    def under(name, *roots):
        return any(name == r or name.startswith(r + ".") for r in roots)

    found = []
    for module in sorted(edges):
        if under(module, "speedlab.train"):
            chain = reach(module, edges, lambda m: under(m, "speedlab.analysis", *DOWNLOAD))
            if chain:
                found.append("train imports analysis or download code: " + " -> ".join(chain))
        if under(module, "speedlab.analysis"):
            chain = reach(module, edges, lambda m: under(m, "torch"))
            if chain:
                found.append("analysis imports torch: " + " -> ".join(chain))
    speedlab = {m: {t for t in ts if under(t, "speedlab")} for m, ts in edges.items()}
    found += ["import cycle: " + " -> ".join(chain) for chain in cycles(speedlab)]
    return found


def test_the_package_keeps_its_import_boundaries():
    edges = graph()
    assert {"speedlab.train.loop", "speedlab.analysis.stats", "speedlab.config"} <= edges.keys()
    assert "torch" in edges["speedlab.train.loop"]
    assert "speedlab.analysis.collect" in edges["speedlab.analysis.import_logs"]
    problems = violations(edges)
    assert not problems, "\n".join(problems)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


BOUNDARY_CASES = {
    "train-analysis": (
        {
            "speedlab/train/loop.py": "def f():\n    from speedlab.train import helper\n",
            "speedlab/train/helper.py": "from ..analysis import stats\n",
            "speedlab/analysis/stats.py": "",
        },
        "train imports analysis or download code: speedlab.train.helper -> speedlab.analysis.stats",
    ),
    "train-hub": (
        {
            "speedlab/train/loop.py": "from speedlab.data.documents import x\n",
            "speedlab/data/documents.py": "def load():\n    from speedlab.data import hub\n",
            "speedlab/data/hub.py": "import httpx2\n",
        },
        "train imports analysis or download code: speedlab.train.loop -> speedlab.data.documents"
        " -> speedlab.data.hub",
    ),
    "analysis-torch-via-package": (
        {
            "speedlab/analysis/figures.py": "from speedlab.train.models.layers import x\n",
            "speedlab/train/models/__init__.py": "from torch import nn\n",
            "speedlab/train/models/layers.py": "",
        },
        "analysis imports torch: speedlab.analysis.figures -> speedlab.train.models.layers"
        " -> speedlab.train.models -> torch",
    ),
    "cycle": (
        {
            "speedlab/a.py": "import speedlab.b\n",
            "speedlab/b.py": "def f():\n    from speedlab import c\n",
            "speedlab/c.py": "from . import a\n",
        },
        "import cycle: speedlab.a -> speedlab.b -> speedlab.c -> speedlab.a",
    ),
}


@pytest.mark.parametrize("case", BOUNDARY_CASES)
def test_a_broken_boundary_is_reported_with_its_chain(tmp_path, case):
    files, message = BOUNDARY_CASES[case]
    files = {"speedlab/__init__.py": "", **files}
    assert message in violations(graph(write_package(tmp_path, files)))


def test_type_checking_imports_and_clean_packages_pass(tmp_path):
    files = {
        "speedlab/__init__.py": "",
        "speedlab/analysis/__init__.py": "",
        "speedlab/analysis/stats.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
            "else:\n    import numpy\n"
        ),
        "speedlab/train/__init__.py": "",
        "speedlab/train/loop.py": "import torch\nfrom speedlab.analysis import stats as _\n",
    }
    edges = graph(write_package(tmp_path, files))
    assert edges["speedlab.analysis.stats"] == {"typing", "numpy"}
    assert violations(edges) == [
        "train imports analysis or download code: speedlab.train.loop -> speedlab.analysis.stats"
    ]


def test_the_trainer_runs_on_torch_and_numpy_alone():
    """A GPU machine may hold torch and numpy but not the pipeline's other dependencies (the
    GPU check calls the trainer directly there): the training modules import without them."""
    import subprocess
    import sys

    blocked = ["jsonschema", "yaml", "pandas", "scipy", "snakemake", "jinja2", "matplotlib"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import speedlab.train.loop, speedlab.train.quantize, speedlab.train.memory\n"
        "import speedlab.train.memory_probe\n"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
