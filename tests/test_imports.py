"""The kernel package's imports flow one way: no module imports another that (directly or through others,
at the top or inside a function) imports it back, and any import order of its modules works."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
MODULES = sorted(p.stem for p in KERNELS.glob("*.py") if p.stem != "__init__")


def package_imports(module: str) -> set[str]:
    """The package modules that `module` imports anywhere in its text (top level or inside functions)."""
    tree = ast.parse((KERNELS / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            else:  # from . import x, y
                found.update(alias.name for alias in node.names)
    return found & set(MODULES)


def test_the_import_graph_has_no_cycle():
    graph = {m: package_imports(m) for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])
    assert graph["_plumbing"] <= {"config"}  # the shared plumbing is a leaf


@pytest.mark.parametrize("first", MODULES)
def test_any_module_imports_first(first):
    """In a fresh interpreter, with the package's __init__ bypassed (an empty package object stands in for it),
    `first` imports before every other module, then the rest in turn and in reverse; then the real package
    imports and its two ops run. A cycle between modules fails here for some `first`."""
    rest = [m for m in MODULES if m != first]
    code = "\n".join([
        "import importlib, sys, types",
        f"pkg = types.ModuleType('vsc_kernels'); pkg.__path__ = [{str(KERNELS)!r}]",
        "sys.modules['vsc_kernels'] = pkg",
        f"for m in {[first, *rest]!r}: importlib.import_module('vsc_kernels.' + m)",
        "for m in list(sys.modules):",
        "    if m == 'vsc_kernels' or m.startswith('vsc_kernels.'): del sys.modules[m]",
        f"pkg = types.ModuleType('vsc_kernels'); pkg.__path__ = [{str(KERNELS)!r}]",
        "sys.modules['vsc_kernels'] = pkg",
        f"for m in {[first, *reversed(rest)]!r}: importlib.import_module('vsc_kernels.' + m)",
        "for m in list(sys.modules):",
        "    if m == 'vsc_kernels' or m.startswith('vsc_kernels.'): del sys.modules[m]",
        "import torch, vsc_kernels as k",
        "x = torch.zeros(2, 3)",
        "k.spike_slab(x, x, x, x, x + 0.5, 50.0, 0.5, backend='numba')",
        "k.gaussian_loglik(torch.zeros(2, 6), x, -6.0, backend='numba')"])
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
