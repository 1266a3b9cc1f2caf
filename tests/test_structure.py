"""The package's structure: one import direction, no cycles, and a test file per module.

Imports are read with `ast` (module level and inside functions), so a lazy import that
goes the wrong way fails here just like a top-level one.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("keras_se", "keras_se_core")

#: Layers, bottom to top: a module may import only modules of its own or a lower layer.
LAYERS = [
    [
        "keras_se_core.errors",
        "keras_se_core.choices",
        "keras_se_core.validation",
        "keras_se_core.fileio",
        "keras_se_core.configs",
        "keras_se_core",
    ],
    ["keras_se.layers"],
    [
        "keras_se.blocks",
        "keras_se.weights",
        "keras_se.state_dicts",
        "keras_se.utils",
        "keras_se.extras",
        "keras_se.speed",
        "keras_se.speed.*",
    ],
    ["keras_se.models.*", "keras_se.models"],
    [
        "keras_se.retrofit",
        "keras_se.data",
        "keras_se.image_folders",
        "keras_se.rundir",
        "keras_se.distribute",
        "keras_se.finetune",
        "keras_se",
    ],
    # the analysis and its figures sit beside training, which logs both to TensorBoard
    [
        "keras_se.training",
        "keras_se.run_setup",
        "keras_se.tuning.*",
        "keras_se.tuning",
        "keras_se.export.*",
        "keras_se.export",
        "keras_se.analysis",
        "keras_se.se_blocks",
        "keras_se.visualize",
        "keras_se.figures",
        "keras_se.fonts",
        "keras_se.ratio_figures",
        "keras_se.excitation_log",
        "keras_se.callbacks",
    ],
    [
        "keras_se.bench",
        "keras_se.bench.*",
        "keras_se.quickstart",
        "keras_se.info",
        "keras_se.predict",
    ],
    ["keras_se.cli", "keras_se_core.cli"],
]


def _modules():
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(module, path, known):
    """Every keras_se/keras_se_core module that ``module`` imports, anywhere in the file."""
    tree = ast.parse(open(path).read(), path)
    is_package = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import module` depends on the module; `from module import name` on it
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _layer(module):
    for index, layer in enumerate(LAYERS):
        for pattern in layer:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return index
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py::LAYERS: place it")


def _graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_import_goes_down_the_layers():
    graph = _graph()
    wrong = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in graph.items()
        for b in targets
        if _layer(b) > _layer(a) and not (a.endswith("__init__") or b == a.rpartition(".")[0])
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is not a cycle of code
    edges = {
        a: {b for b in t if not a.startswith(b + ".") and not b.startswith(a + ".")}
        for a, t in graph.items()
    }
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_core_imports_no_keras_or_tensorflow_at_module_level():
    for module, path in _modules().items():
        if not module.startswith("keras_se_core"):
            continue
        tree = ast.parse(open(path).read(), path)
        for node in tree.body:  # module level only: the launcher imports keras_se to run a command
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert name.split(".")[0] not in ("keras", "tensorflow", "keras_se", "numpy"), (
                    module,
                    name,
                )


def _plain_modules():
    """Modules that are files (not packages), outside keras_se.models."""
    return sorted(
        m
        for m, path in _modules().items()
        if not path.endswith("__init__.py")
        and ".models." not in m
    )


@pytest.mark.parametrize("module", _plain_modules())
def test_every_module_has_its_test_file(module):
    name = module.rpartition(".")[2]
    assert os.path.exists(os.path.join(ROOT, "tests", f"test_{name}.py")), f"tests/test_{name}.py"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if ".models." in m))
def test_every_model_module_has_its_test_file(module):
    name = module.rpartition(".")[2]
    assert os.path.exists(os.path.join(ROOT, "tests", f"test_{name}.py")), f"tests/test_{name}.py"
