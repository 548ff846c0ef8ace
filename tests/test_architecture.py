"""The shape of the house, checked: no import cycles between rooms, the library imports no program,
and files stay small enough to read in one sitting (or say why at their top)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "crossalign"
# Rooms that must import with no trainer, CLI, server or recipe (ARCHITECTURE.md "Library").
LIBRARY = {"modalities", "encoders", "data", "datasets", "align", "evaluate", "explain", "index", "fuse",
           "bridge", "semi", "export", "config", "paths", "saved"}
# Leaves: every room may import them, so they import no other room (and nothing heavy at import).
LEAVES = {"config": PKG / "config.py", "saved": PKG / "saved.py"}
PROGRAMS = {"cli", "serve", "train", "recipes", "demo", "federate"}
MAX_LINES = 300


def _module_name(p: Path) -> str:
    parts = list(p.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(p: Path) -> set[str]:
    """Every crossalign module this file imports, at module level or inside functions."""
    name, out = _module_name(p), set()
    is_pkg = p.name == "__init__.py"
    for node in ast.walk(ast.parse(p.read_text(), str(p))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
    return {m for m in out if m == "crossalign" or m.startswith("crossalign.")}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _room_graph() -> dict[str, dict[str, str]]:
    """room -> {imported room: an example 'a -> b' edge}."""
    graph: dict[str, dict[str, str]] = {}
    for p in PKG.rglob("*.py"):
        src = _module_name(p)
        for dst in _imports(p):
            a, b = _room(src), _room(dst)
            if a and b and a != b:
                graph.setdefault(a, {}).setdefault(b, f"{src} -> {dst}")
    return graph


def test_no_import_cycle_between_rooms() -> None:
    graph = _room_graph()
    cycles = []
    for a, outs in graph.items():
        for b, edge in outs.items():
            if a < b and a in graph.get(b, {}):
                cycles.append(f"{a} <-> {b}: {edge}; {graph[b][a]}")
    assert not cycles, "import cycles between rooms:\n" + "\n".join(cycles)


def test_library_imports_no_program() -> None:
    bad = [f"{edge}" for a, outs in _room_graph().items() if a in LIBRARY
           for b, edge in outs.items() if b in PROGRAMS]
    assert not bad, "library rooms import programs:\n" + "\n".join(bad)


def test_leaves_import_no_other_room() -> None:
    bad = [f"{name} -> {m}" for name, p in LEAVES.items() for m in _imports(p) if _room(m) != name]
    assert not bad, "leaf modules import other rooms:\n" + "\n".join(bad)


def test_config_imports_nothing_heavy() -> None:
    """Reading a config (CLI help, a federation site's settings) must not load torch or numpy."""
    import subprocess
    import sys

    code = ("import sys, crossalign.config, crossalign.saved; "
            "print(sorted(m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": ""}).stdout.strip()
    assert out == "[]", f"importing crossalign.config / crossalign.saved loaded {out}"


def test_files_are_small_or_say_why() -> None:
    long = []
    for p in sorted(PKG.rglob("*.py")):
        text = p.read_text()
        if text.count("\n") > MAX_LINES and "Long file:" not in text[:2000]:
            long.append(f"{p.relative_to(SRC)} ({text.count(chr(10))} lines)")
    assert not long, f"files over {MAX_LINES} lines with no 'Long file:' reason at the top:\n" + "\n".join(long)


def test_every_module_imports() -> None:
    """A renamed helper or a stale import fails here, not in the middle of a user's command."""
    import importlib
    import pkgutil

    import crossalign

    bad = []
    for m in pkgutil.walk_packages(crossalign.__path__, "crossalign."):
        if m.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(m.name)
        except Exception as e:  # noqa: BLE001 - report every broken module at once
            bad.append(f"{m.name}: {e!r}")
    assert not bad, "\n".join(bad)


# Rooms that serve any data set: they may use scenes knowledge (QA, caption parser, built-in tasks from
# crossalign.datasets.scenes) but never the generator that draws and writes scenes.
GENERIC = {"evaluate", "fuse", "bridge", "serve", "index", "align", "train"}
SCENES_GENERATOR = ("crossalign.datasets.scenes.generator", "crossalign.datasets.scenes.render", "crossalign.data.scenes")


def test_generic_rooms_do_not_import_the_scenes_generator() -> None:
    """Followed through every import, at module level or inside functions, so a detour via data/ counts."""
    graph = {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}
    bad = []
    for start in sorted(m for m in graph if _room(m) in GENERIC):
        seen, todo = {start: start}, [start]
        while todo:
            cur = todo.pop()
            for nxt in graph.get(cur, ()):
                if nxt not in seen:
                    seen[nxt] = cur
                    todo.append(nxt)
        for gen in SCENES_GENERATOR:
            if gen in seen:
                path, cur = [gen], gen
                while cur != start:
                    cur = seen[cur]
                    path.append(cur)
                bad.append(" -> ".join(reversed(path)))
    assert not bad, "generic rooms reach the scenes generator:\n" + "\n".join(bad)
