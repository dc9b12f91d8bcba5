"""The layout as a contract: no import cycle, and imports only run down the layers.

Imports inside functions count (a lazy import that dodges a cycle is still a cycle); only
imports under ``if TYPE_CHECKING:`` are exempt. The layers are docs/architecture.md's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "clrbench"

# Top to bottom: a module may import its own layer's modules and any layer below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("clrbench.cli", "clrbench.__main__"),
    ("clrbench.study",),
    ("clrbench.eval", "clrbench.leaderboard", "clrbench.launch"),
    ("clrbench.pretraining",),
    ("clrbench.weights",),
    ("clrbench.data",),
    ("clrbench.simclr",),
    ("clrbench.config", "clrbench.records", "clrbench.provenance", "clrbench.device", "clrbench.dist",
     "clrbench.atomic", "clrbench.log", "clrbench.registry", "clrbench.errors", "clrbench.locks",
     "clrbench.config_checks",
     "clrbench"),
]
# Sibling packages of one layer that must not know each other either.
INDEPENDENT = [("clrbench.eval", "clrbench.leaderboard")]


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The clrbench modules ``name`` imports anywhere in its body, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    is_pkg = path.name == "__init__.py"
    deps: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            # the deepest known module the name refers to ('clrbench.eval.jobs.run_job' -> jobs)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                deps.add(t)
    return deps


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def layer_of(module: str) -> int:
    best, depth = len(LAYERS), -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = [f"{a} -> {b}" for a, deps in g.items() for b in deps if layer_of(b) < layer_of(a)]
    for x, y in INDEPENDENT:
        for a, deps in g.items():
            for b in deps:
                ia, ib = a.startswith(x + ".") or a == x, b.startswith(y + ".") or b == y
                ja, jb = a.startswith(y + ".") or a == y, b.startswith(x + ".") or b == x
                if (ia and ib) or (ja and jb):
                    bad.append(f"{a} -> {b} (siblings)")
    return sorted(bad)


def test_no_import_cycle() -> None:
    assert find_cycles(graph()) == []


def test_imports_only_run_down_the_layers() -> None:
    assert upward_imports(graph()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer_of(m) == len(LAYERS)] == []


def test_the_checker_sees_a_lazy_cycle(tmp_path: Path) -> None:
    """The checks above can fail: a cycle through a function-level import is found."""
    g = {"clrbench.a": {"clrbench.b"}, "clrbench.b": {"clrbench.a"}, "clrbench.c": set()}
    assert find_cycles(g) == [["clrbench.a", "clrbench.b"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from clrbench.eval import jobs\n")
    assert imports_of("clrbench.data.m", src, {"clrbench.eval.jobs", "clrbench.eval"}) == {
        "clrbench.eval.jobs",
        "clrbench.eval",
    }
    assert upward_imports({"clrbench.data.m": {"clrbench.eval.jobs"}}) == ["clrbench.data.m -> clrbench.eval.jobs"]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


# House rule: torch.distributed only in dist.py; ray only in the launcher, the executor and
# Ray Tune's fine-tune search.
CONFINED = {
    "torch.distributed": {"clrbench.dist"},
    "ray": {"clrbench.launch", "clrbench.eval.executor", "clrbench.eval.finetune.asha"},
}


def external_imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth (TYPE_CHECKING included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def confined_breaches(mods: dict[str, Path]) -> list[str]:
    out = []
    for name, path in sorted(mods.items()):
        for lib, allowed in CONFINED.items():
            hits = [m for m in external_imports(path) if m == lib or m.startswith(lib + ".")]
            if hits and name not in allowed:
                out.append(f"{name} imports {lib}")
    return out


def test_distributed_and_ray_stay_in_their_modules(tmp_path: Path) -> None:
    assert confined_breaches(modules()) == []
    src = tmp_path / "m.py"  # the check can fail: a lazy ray import elsewhere is caught
    src.write_text("def f():\n    from torch import nn\n    import ray.tune\n")
    assert confined_breaches({"clrbench.data.m": src}) == ["clrbench.data.m imports ray"]
