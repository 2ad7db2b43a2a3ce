"""vsc_cli's imports run downwards through its layer folders (as tests/test_imports.py checks vsc_kernels' graph):
every import in every module, at the top or inside a function, absolute or relative, reaches a module of the same
layer or a lower one, and no module imports another that (directly or through others) imports it back."""
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vsc_cli"

# The layers, lowest first; the folders of one layer sit side by side and import nothing of each other.
LAYERS = (
    ("common",),
    ("models", "data"),
    ("trainers",),
    ("evaluation",),
    ("pipelines",),
    ("cli",),
)
# The package's own vsc_cli/__init__.py (the Python API's names) and __main__.py: the front door, above every layer.
FRONT_DOOR = ("vsc_cli", "vsc_cli.__main__")

RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, p in FILES.items() if p.name == "__init__.py"}


def resolve(name: str) -> str:
    """The module an imported name stands for: itself when it is one of vsc_cli's modules, else the longest
    prefix that is (from vsc_cli.common.config import TrainConfig -> vsc_cli.common.config)."""
    while name not in FILES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> dict[str, int]:
    """vsc_cli's modules that `module` imports anywhere in its text, each with the first line doing so."""
    tree = ast.parse(FILES[module].read_text(), str(FILES[module]))
    found = {}

    def add(target: str, line: int):
        if target == "vsc_cli" or target.startswith("vsc_cli."):
            found.setdefault(resolve(target), line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package (itself, for an __init__.py), then up
                here = module if module in PACKAGES else module.rsplit(".", 1)[0]
                base = ".".join(here.split(".")[:len(here.split(".")) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            for alias in node.names:  # `from X import Y`: Y is a module of X's, or a name X defines
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in FILES else base, node.lineno)
    found.pop(module, None)
    return found


GRAPH = {m: imports(m) for m in FILES}


def layer(module: str):
    """(rank, folder) of a module; the front door ranks above every layer."""
    if module in FRONT_DOOR:
        return len(LAYERS), "front door"
    folder = module.split(".")[1]
    return RANK.get(folder), folder


def test_every_module_sits_in_a_layer():
    outside = [m for m in FILES if m not in FRONT_DOOR and layer(m)[0] is None]
    assert not outside, f"modules outside the layer folders of LAYERS: {outside}"


def test_imports_run_to_the_same_layer_or_a_lower_one():
    wrong = []
    for module, targets in GRAPH.items():
        rank, folder = layer(module)
        for target, line in sorted(targets.items()):
            t_rank, t_folder = layer(target)
            if t_rank > rank or (t_rank == rank and t_folder != folder):
                side = "upwards" if t_rank > rank else "sideways"
                wrong.append(f"{FILES[module].relative_to(PACKAGE.parent)}:{line}: {module} ({folder}) imports "
                             f"{target} ({t_folder}), {side}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_module_graph_has_no_cycle():
    state, cycles = {}, []

    def visit(m, path):
        if state.get(m) == "done":
            return
        if state.get(m) == "open":
            cycles.append(" -> ".join(path[path.index(m):] + [m]))
            return
        state[m] = "open"
        for n in sorted(GRAPH[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(FILES):
        visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_every_kind_of_import(tmp_path, monkeypatch):
    """The parser itself: absolute, from-absolute, relative (one and two levels, from a module and from a package's
    __init__), inside a function; names that are not modules count as their module."""
    root = tmp_path / "vsc_cli"
    for rel, text in {
        "__init__.py": "",
        "common/__init__.py": "from . import config\n",
        "common/config.py": "X = 1\n",
        "models/__init__.py": "",
        "models/vae.py": ("import vsc_cli.common.config\nfrom vsc_cli.common.config import X\n"
                          "from .prior import P\nfrom ..data import sources\n"
                          "def f():\n    from vsc_cli.trainers import train\n"),
        "models/prior.py": "P = 1\n",
        "data/__init__.py": "",
        "data/sources.py": "",
        "trainers/__init__.py": "",
        "trainers/train.py": "",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", root)
    files = {module_name(p): p for p in sorted(root.rglob("*.py"))}
    monkeypatch.setattr(this, "FILES", files)
    monkeypatch.setattr(this, "PACKAGES", {n for n, p in files.items() if p.name == "__init__.py"})
    assert set(imports("vsc_cli.models.vae")) == {"vsc_cli.common.config", "vsc_cli.models.prior",
                                                 "vsc_cli.data.sources", "vsc_cli.trainers.train"}
    assert imports("vsc_cli.common") == {"vsc_cli.common.config": 1}
    assert [layer(m) for m in ("vsc_cli", "vsc_cli.data.sources", "vsc_cli.cli")] == \
        [(len(LAYERS), "front door"), (1, "data"), (5, "cli")]
