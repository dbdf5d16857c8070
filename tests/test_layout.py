"""The package's import graph: every module imports on its own, no two modules import each other (directly
or around a loop), no package imports a package above it in the pipeline, and no function imports one of
our own modules (an import inside a function is how a cycle or an upward edge hides)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ab" / "gpt" / "brute" / "fract"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Absolute names an import statement may name (a module, or a name in it), relative ones resolved."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _statements(path: Path, source: str | None = None) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a file, and whether it sits inside a function."""
    tree = ast.parse(path.read_text() if source is None else source)
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return [(n, id(n) in local) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _edges(name: str, path: Path) -> list[tuple[str, int]]:
    """(package module, line) for each import of `name` anywhere in its source (relative or absolute)."""
    found = []
    for node, _local in _statements(path):
        # a module's own parent packages are imported before it anyway: not an edge
        found += [(t, node.lineno) for t in _resolve(node, _package(name, path))
                  if t in MODULES and t != name and not name.startswith(t + ".")]
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Package modules that `name` imports anywhere in its source (relative or absolute)."""
    return {t for t, _line in _edges(name, path)}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert "ab.gpt.brute.fract.space.builtin_plugin" in graph["ab.gpt.brute.fract.space.registry"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


SPACE = sorted(n for n in MODULES if n.startswith("ab.gpt.brute.fract.space")) + ["ab.gpt.brute.fract.fractal_template"]


@pytest.mark.parametrize("module", SPACE)
def test_each_space_module_imports_alone(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]



# The pipeline, bottom to top: a module may import its own package and the packages below it, never one above.
# Modules directly in the top package (the paper's entry modules, the CLI, the demo) are the top layer.
LAYERS = ("util",        # plumbing: atomic writes, folder locks, paths, a meter, CLI helpers
          "lemur",       # LEMUR names, stat files, the DB, the dataset subset
          "space",       # specs, layer families, the space, generators, plugin hooks
          "tune",        # per-machine policies: memory, probes, compile, AMP, cost model
          "trial",       # the jail, the worker, the training run, its data, executors
          "generation",  # template rendering, static check, validation in jails, the manifest
          "sweep",       # the evaluation driver, run records, order, halving, plan, calibration, loop
          "report",      # tables, figures, statistics, HTML
          "boundary",    # trainability-boundary maps
          "study",       # studies over sweeps and reports
          "")            # entry modules: AlterNNFN, NNAlterFractalNet, fractal_template, cli, demo
ENTRY = ROOT / "ab" / "gpt" / "NNEval.py"  # the paper's evaluation entry module, outside the package
TOP = "ab.gpt.brute.fract."


def _layer(module: str) -> int:
    rest = module[len(TOP):].split(".") if module.startswith(TOP) else []
    if len(rest) < 2 and not (rest and (PKG / rest[0]).is_dir()):
        return len(LAYERS) - 1  # a module of the top package
    assert rest[0] in LAYERS, f"package {rest[0]!r} has no place in LAYERS (tests/test_layout.py): declare it"
    return LAYERS.index(rest[0])


def _upward(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    name = lambda m: LAYERS[_layer(m)] or "entry"  # noqa: E731
    return [f"{src} line {line} imports {dst} ({name(src)} is below {name(dst)})"
            for src, out in sorted(edges.items()) for dst, line in out if _layer(dst) > _layer(src)]


def test_every_package_has_a_layer():
    packages = {p.parent.relative_to(PKG).parts[0] for p in PKG.rglob("__init__.py") if p.parent != PKG}
    assert packages <= set(LAYERS), f"declare these packages in LAYERS: {sorted(packages - set(LAYERS))}"


def test_no_package_imports_a_package_above_it():
    bad = _upward({name: _edges(name, path) for name, path in MODULES.items()})
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_upward_check_finds_an_upward_edge():
    assert _upward({TOP + "trial.worker": [(TOP + "boundary.cnn", 7)], TOP + "sweep.plan": [(TOP + "trial.data", 3)],
                    TOP + "demo": [(TOP + "report.build", 5)], TOP + "util.paths": [(TOP + "cli", 9)]}) == [
        f"{TOP}trial.worker line 7 imports {TOP}boundary.cnn (trial is below boundary)",
        f"{TOP}util.paths line 9 imports {TOP}cli (util is below entry)"]


def _local_own_imports(name: str, path: Path, source: str | None = None) -> list[str]:
    package = _package(name, path)
    where = path.relative_to(ROOT) if path.is_absolute() else path
    return [f"{where}:{node.lineno}: {name} imports {', '.join(targets[1:] or targets)} inside a function"
            for node, local in _statements(path, source)
            if local and (targets := _resolve(node, package))[0].startswith("ab.gpt")]


def test_no_function_imports_our_own_modules():
    """Our own modules are imported at the top of a module (lazy imports of heavy third-party libraries are
    fine); the jailed worker loads its handlers by name with importlib instead."""
    bad = [m for name, path in {**MODULES, "ab.gpt.NNEval": ENTRY}.items() for m in _local_own_imports(name, path)]
    assert not bad, "function-local imports of our own modules:\n" + "\n".join(bad)


def test_the_local_import_check_finds_one():
    src = "import torch\n\ndef f():\n    import numpy\n    from ..trial import data\n    return data\n"
    found = _local_own_imports(TOP + "sweep.plan", Path("ab/gpt/brute/fract/sweep/plan.py"), src)
    assert found == [f"ab/gpt/brute/fract/sweep/plan.py:5: {TOP}sweep.plan imports {TOP}trial.data inside a function"]
