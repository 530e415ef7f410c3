"""The package's import rules, read from the source with `ast` (module-level imports, imports inside functions
and `TYPE_CHECKING` blocks, and `hf_experiments.*` strings handed to `importlib`):

- `core` and `sweeps` import no experiment package (the registry's name -> module table is the one reference);
- experiment packages never import each other (what two share belongs in `core`);
- no import cycles between modules;
- model code (`configuration_*`, `modeling_*`, `tokenization_*`) imports only the standard library, torch,
  transformers (and what transformers itself depends on), peft and mup, sibling model code, and the char
  tokenizer of `core`, so it can be saved with the weights as custom code.

Each rule is also run on a small planted package that breaks it, so a checker that silently finds nothing fails.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "hf_experiments"
EXPERIMENTS = ("arrows", "blotch", "compression", "mlp", "recurrent")
FRAMEWORK = ("core", "sweeps")
MODEL_PREFIXES = ("configuration_", "modeling_", "tokenization_")
# Third-party packages model code may import: torch, transformers, what transformers itself depends on, and the
# optional libraries it integrates (peft for LoRA, mup for muP).
# Hard dependencies of transformers (huggingface_hub, safetensors, tokenizers) come with it wherever it is installed.
MODEL_THIRD_PARTY = {"torch", "transformers", "huggingface_hub", "safetensors", "tokenizers", "numpy", "peft", "mup"}
SHARED_MODEL_CODE = {f"{PACKAGE}.core.tokenization_char"}
# The registry's table names the experiment modules it imports on demand: the one allowed reference.
REGISTRY = f"{PACKAGE}.core.registry"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, package: str) -> set[str]:
    """Every module `path` imports (absolute names), wherever the import statement is, plus
    `package.x.y` / `package.x.y:obj` string constants (importlib targets)."""
    name = module_name(path, root)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import submodule` names the submodule, `from pkg.mod import Name` the module
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.split(":")[0]
            if text.startswith(package + ".") and text.replace(".", "").replace("_", "").isalnum():
                out.add(text)
    return out


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (names resolved to existing modules or packages)."""
    files = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets = set()
        for t in imports_of(path, root, package):
            while t and t not in files:  # `pkg.mod.Name` -> `pkg.mod`
                t = t.rpartition(".")[0]
            if t and t != mod:
                targets.add(t)
        graph[mod] = targets
    return graph


def group(mod: str, package: str = PACKAGE) -> str | None:
    """`core`, `sweeps`, an experiment package's name, or None (the top level)."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else None


def framework_violations(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    """Framework modules importing an experiment, or the root package (whose `__init__` imports them all)."""
    return [
        f"{m} imports {t}"
        for m, ts in graph.items()
        for t in sorted(ts)
        if group(m, package) in FRAMEWORK
        and (group(t, package) in EXPERIMENTS or t == package)
        and m != REGISTRY.replace(PACKAGE, package)
    ]


def cross_experiment_violations(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    return [
        f"{m} imports {t}"
        for m, ts in graph.items()
        for t in sorted(ts)
        if group(m, package) in EXPERIMENTS
        and group(t, package) in EXPERIMENTS
        and group(t, package) != group(m, package)
    ]


def cycles(graph: dict[str, set[str]], package: str = PACKAGE) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), without the registry's table."""
    registry = REGISTRY.replace(PACKAGE, package)
    edges = {m: {t for t in ts if not (m == registry and group(t, package) in EXPERIMENTS)} for m, ts in graph.items()}
    # A package's __init__ is imported with every submodule by Python itself; its own imports of submodules
    # (registration) are not cycles between code modules.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def model_code_violations(root: Path, package: str = PACKAGE) -> list[str]:
    std = set(sys.stdlib_module_names) | {"__future__"}
    shared = {s.replace(PACKAGE, package) for s in SHARED_MODEL_CODE}
    out = []
    for path in (root / package).rglob("*.py"):
        if not path.name.startswith(MODEL_PREFIXES):
            continue
        mod = module_name(path, root)
        folder = mod.rpartition(".")[0]
        for t in sorted(imports_of(path, root, package)):
            t = _owner(t, root)
            top = t.split(".")[0]
            if top in std or top in MODEL_THIRD_PARTY:
                continue
            sibling_model_code = t.rpartition(".")[0] == folder and t.rpartition(".")[2].startswith(MODEL_PREFIXES)
            if top == package and (sibling_model_code or t in shared):
                continue
            out.append(f"{mod} imports {t}")
    return sorted(set(out))


def _owner(name: str, root: Path) -> str:
    """The module or package a dotted name lives in (`pkg.mod.Name` -> `pkg.mod`); other libraries: the name up to
    its top-level package's first part that is not an attribute is unknown, so the top-level name."""
    parts = name.split(".")
    if not (root / parts[0]).is_dir():
        return parts[0]
    while parts and not ((root / Path(*parts)).with_suffix(".py").is_file() or (root / Path(*parts)).is_dir()):
        parts.pop()
    return ".".join(parts)


# ----- the rules on the real package -----
GRAPH = import_graph(ROOT)


def test_the_checker_sees_the_whole_package():
    assert len(GRAPH) > 60
    assert f"{PACKAGE}.core.trainer" in GRAPH[f"{PACKAGE}.blotch.blotch_trainer"]
    assert f"{PACKAGE}.blotch.experiment" in GRAPH[REGISTRY]  # the table's strings are read


def test_core_and_sweeps_import_no_experiment():
    assert framework_violations(GRAPH) == []


def test_experiments_never_import_each_other():
    assert cross_experiment_violations(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_model_code_imports_only_torch_transformers_and_siblings():
    assert model_code_violations(ROOT) == []


def test_every_registered_experiment_module_exists():
    from hf_experiments.core.registry import EXPERIMENTS as TABLE

    for name, target in TABLE.items():
        module, _, cls = target.partition(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), name
        assert group(module) in EXPERIMENTS and cls


# ----- planted violations: each rule must catch its own -----
def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for d in [p for p in (tmp_path / "pkg").rglob("*") if p.is_dir()] + [tmp_path / "pkg"]:
        (d / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize("where", ["module level", "inside a function", "type checking", "importlib string"])
def test_planted_framework_import_of_an_experiment_is_caught(tmp_path, where):
    body = {
        "module level": "from pkg.blotch.arithmetic import solve\n",
        "inside a function": "def f():\n    from ..blotch import arithmetic\n    return arithmetic\n",
        "type checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from pkg.blotch.arithmetic import x\n",
        "importlib string": "import importlib\nm = importlib.import_module('pkg.blotch.arithmetic')\n",
    }[where]
    root = _plant(tmp_path, {"core/runner.py": body, "blotch/arithmetic.py": "x = 1\n"})
    assert framework_violations(import_graph(root, "pkg"), "pkg") == ["pkg.core.runner imports pkg.blotch.arithmetic"]


def test_planted_cross_experiment_import_is_caught(tmp_path):
    root = _plant(
        tmp_path,
        {
            "blotch/modeling_blotch.py": "from pkg.arrows.modeling_gpt import mask\n",
            "arrows/modeling_gpt.py": "mask = 1\n",
        },
    )
    graph = import_graph(root, "pkg")
    assert cross_experiment_violations(graph, "pkg") == ["pkg.blotch.modeling_blotch imports pkg.arrows.modeling_gpt"]
    assert model_code_violations(root, "pkg") == ["pkg.blotch.modeling_blotch imports pkg.arrows.modeling_gpt"]


def test_planted_cycle_is_caught(tmp_path):
    root = _plant(tmp_path, {"core/a.py": "from pkg.core import b\n", "core/b.py": "def f():\n    from . import a\n"})
    assert cycles(import_graph(root, "pkg"), "pkg") == [["pkg.core.a", "pkg.core.b"]]


def test_planted_framework_import_of_the_root_package_is_caught(tmp_path):
    root = _plant(tmp_path, {"sweeps/cli.py": "import pkg\n"})
    (root / "pkg" / "__init__.py").write_text("from pkg import blotch\n")
    assert framework_violations(import_graph(root, "pkg"), "pkg") == ["pkg.sweeps.cli imports pkg"]


def test_planted_model_code_import_of_a_non_model_sibling_is_caught(tmp_path):
    root = _plant(
        tmp_path,
        {
            "arrows/modeling_gpt.py": "from .experiment import thing\n",
            "arrows/experiment.py": "from pkg.core.config import X\nthing = 1\n",
        },
    )
    assert model_code_violations(root, "pkg") == ["pkg.arrows.modeling_gpt imports pkg.arrows.experiment"]


def test_planted_model_code_import_of_the_framework_is_caught(tmp_path):
    root = _plant(
        tmp_path,
        {
            "mlp/modeling_mlp.py": "import torch\nfrom pkg.core.config import ConfigError\n"
            "from .configuration_mlp import C\n",
            "mlp/configuration_mlp.py": "import pandas\nC = 1\n",
            "core/config.py": "ConfigError = 1\n",
        },
    )
    assert sorted(model_code_violations(root, "pkg")) == [
        "pkg.mlp.configuration_mlp imports pandas",
        "pkg.mlp.modeling_mlp imports pkg.core.config",
    ]
