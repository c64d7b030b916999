"""The package's layout: no import cycles, layers import downward only, and
`import zoo`, listing and describing models never import TensorFlow.

Imports are read from the source (module level and inside functions alike),
so a lazy import that closes a cycle fails here too.
"""

import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT, zoo_env

PACKAGE = os.path.join(ROOT, "zoo")
# Layers from the top: a module may import its own layer or any below it.
LAYERS = [
    ("face", ("zoo", "zoo.cli", "zoo.recipe", "zoo.launch", "zoo.__main__", "zoo.serve")),
    ("training", ("zoo.trainer", "zoo.callbacks", "zoo.tensorboard", "zoo.runs", "zoo.predict", "zoo.evaluate",
                  "zoo.folds", "zoo.compare", "zoo.exports", "zoo.compression")),
    ("models", ("zoo.models",)),
    ("framework", ("zoo.registry", "zoo.task", "zoo.task_types")),
    ("shared", ("zoo.data", "zoo.metrics", "zoo.hub", "zoo.inference")),
    ("base", ("zoo.config", "zoo.files", "zoo.quiet", "zoo.distribute", "zoo.workarounds",
              "zoo.precision")),
]


def _modules():
    """`{module name: path}` of every module under zoo/."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def _imports(path, modules):
    """The zoo modules that the file at `path` imports."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("zoo"):
                out.add(name)
    return out


def _graph():
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def _layer(module):
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "zoo"):
            return rank
    return 0 if module == "zoo" else None


def _is_ancestor(a, b):
    return b.startswith(a + ".")


def test_every_module_has_a_layer():
    assert [m for m in _graph() if _layer(m) is None] == []


def test_no_import_cycles():
    graph = _graph()
    # A module importing a sibling in its own package runs the package's
    # __init__ first, already under way: that is not an edge to the parent.
    graph = {m: {d for d in deps if not _is_ancestor(d, m)} for m, deps in graph.items()}
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_downward_only():
    upward = []
    for module, deps in _graph().items():
        for dep in deps:
            if _is_ancestor(dep, module) or _is_ancestor(module, dep):
                continue
            if _layer(dep) < _layer(module):
                upward.append(f"{module} -> {dep}")
    assert upward == []


@pytest.mark.parametrize("lower", ["zoo.models", "zoo.data", "zoo.metrics"])
def test_models_data_and_metrics_never_import_the_trainer(lower):
    banned = ("zoo.trainer", "zoo.callbacks", "zoo.tensorboard", "zoo.runs", "zoo.cli", "zoo.recipe")
    offenders = [f"{m} -> {d}" for m, deps in _graph().items()
                 if m == lower or m.startswith(lower + ".") for d in deps if d in banned]
    assert offenders == []


def test_the_check_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle check fails on a cycle: two modules that import each other."""
    pkg = tmp_path / "zoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from zoo import b\n")
    (pkg / "b.py").write_text("from zoo.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", str(pkg))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    with pytest.raises(AssertionError, match="zoo.a -> zoo.b -> zoo.a"):
        test_no_import_cycles()


def test_import_list_and_info_do_not_import_tensorflow():
    code = (
        "import sys, zoo; zoo.list_models(); [zoo.info(n) for n in zoo.list_models()]; "
        "zoo.get_config('dcgan'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=zoo_env(), check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
