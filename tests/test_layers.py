"""The package's boundaries, enforced: which module may import which, and what runs without torch.

* ``vaezip.format`` (the byte layout) imports no torch and nothing of the networks;
* ``vaezip.entropy`` imports no model (``vaezip.models``), no zoo and no codec;
* the codec (``vaezip.codec`` and everything it imports, lazily or not) imports neither training nor bench;
* nothing outside ``vaezip.training`` imports training, except the train and export commands of the CLI;
* ``import vaezip``, ``vaezip --help``, ``vaezip info`` and ``vaezip models`` work with torch unimportable.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vaezip

PACKAGE = Path(vaezip.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, as absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # `from . import codec` imports a module, `from . import NAME` the package that defines NAME
            out |= {f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names}
    return out


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _closure(root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for dep in GRAPH.get(mod, ()):
            if dep in GRAPH:
                todo.append(dep)
            elif dep.split(".")[0] != "vaezip":
                seen.add(dep)
    return seen


def _within(mods: set[str], prefix: str) -> set[str]:
    return {m for m in mods if m == prefix or m.startswith(prefix + ".")}


def test_the_graph_is_read():
    assert "vaezip.codec" in GRAPH and "torch" in _closure("vaezip.codec")


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("vaezip.format")))
def test_the_format_imports_no_torch_and_no_networks(module):
    reached = _closure(module)
    assert not _within(reached, "torch"), reached
    assert not (_within(reached, "vaezip.models") | _within(reached, "vaezip.nn") | _within(reached, "vaezip.entropy"))


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("vaezip.entropy")))
def test_the_entropy_layer_imports_no_model(module):
    reached = _closure(module)
    for forbidden in ("vaezip.models", "vaezip.zoo", "vaezip.codec", "vaezip.training", "vaezip.bench"):
        assert not _within(reached, forbidden), (module, forbidden)


@pytest.mark.parametrize("root", ["vaezip.codec", "vaezip", "vaezip.zoo.loader", "vaezip.refine"])
def test_the_codec_imports_neither_training_nor_bench(root):
    reached = _closure(root)
    assert not _within(reached, "vaezip.training") and not _within(reached, "vaezip.bench"), root


def test_only_training_and_its_commands_import_training():
    importers = {m for m, deps in GRAPH.items()
                 if _within(deps, "vaezip.training") and not m.startswith("vaezip.training")}
    assert importers <= {"vaezip.cli"}, importers


NO_TORCH = "import sys; sys.modules['torch'] = None; "


@pytest.mark.parametrize("code", [
    "import vaezip; assert vaezip.DEFAULT_MODEL in vaezip.REGISTRY",
    "from vaezip.cli import main; main(['--help'])",
    "from vaezip.cli import main; main(['models'])",
    "import sys, vaezip; vaezip.read_info(sys.argv[1])",
    "import sys; from vaezip.cli import main; main(['info', sys.argv[1]])",
])
def test_cheap_things_need_no_torch(code):
    """With torch unimportable, the registry, --help, models and info still answer."""
    golden = sorted((Path(__file__).parent / "data").glob("golden-*.vz"))[0]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH + code, str(golden)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
