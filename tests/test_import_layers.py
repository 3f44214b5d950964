"""The package's folders import each other one way: config and utils, data, modeling, inference, evaluation, engine.

Read from the source with ``ast`` (function-level imports included): an import at run time inside a function is still
an edge of the graph, and a cycle between folders is what makes a lower folder unusable without a higher one.
"""
import ast
import pathlib

import pytest

import volumetric_attention

PACKAGE = pathlib.Path(volumetric_attention.__file__).resolve().parent
NAME = PACKAGE.name
# a module may import from its own layer or a lower one
LAYERS = {"config": 0, "utils": 0, "data": 1, "modeling": 2, "inference": 3, "evaluation": 4, "engine": 5}


def _unit(module: str) -> str:
    """``volumetric_attention.data.mapper`` -> ``data``; ``volumetric_attention.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imported_modules(path: pathlib.Path):
    """Absolute names of the package's own modules that ``path`` imports, with line numbers."""
    # the package a relative import starts from: the module's folder (``__init__`` is a module of its folder too)
    package = (NAME,) + path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ((node.module,) if node.module else ()))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == NAME or name.startswith(NAME + "."):
                yield name, node.lineno


def _edges():
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel == pathlib.Path("__init__.py"):
            continue  # the package root imports every folder to register their components
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name, line in _imported_modules(path):
            dst = _unit(name)
            if dst and dst != src:
                edges.append((src, dst, f"{rel}:{line} imports {name}"))
    return edges


def test_every_folder_has_a_layer():
    units = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert units <= set(LAYERS), f"place {sorted(units - set(LAYERS))} in LAYERS"


def test_imports_run_one_way():
    upward = [where for src, dst, where in _edges() if LAYERS[dst] > LAYERS[src]]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_cycle_between_folders():
    graph = {}
    for src, dst, _ in _edges():
        graph.setdefault(src, set()).add(dst)

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, seen + (n,))) for n in graph.get(a, ()))

    cycles = sorted(u for u in graph if reaches(u, u))
    assert not cycles, f"folders on an import cycle: {cycles}"


@pytest.mark.parametrize("source, expected", [
    ("from ..engine.checkpoint import VACheckpointer", f"{NAME}.engine.checkpoint"),
    ("from .. import evaluation", f"{NAME}.evaluation"),
    ("from .slice_labels import LESION", f"{NAME}.inference.slice_labels"),
    ("def f():\n    from volumetric_attention.engine import VATrainer", f"{NAME}.engine"),
])
def test_the_reader_resolves_relative_and_nested_imports(tmp_path, monkeypatch, source, expected):
    fake = PACKAGE / "inference" / "volume_predictor.py"
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self, *a, **k: source)
    assert [n for n, _ in _imported_modules(fake)] == [expected]
