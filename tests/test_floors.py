"""The package by floors (README, "Code map"): a module imports only its own floor and the floors below it.

    0 base/                      errors, the config directory and Hydra compose, atomic writes, log filters
    1 data/, models/, evaluate/  the data, the networks, the lecture's evaluation
    2 core/                      one run: config checks, LightningModule, trainer, checkpoints, resume, signals
    3 the tools                  __main__, ladder, report, bench, calibrate, doctor/, search/

Every import counts, at any depth (inside functions too: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pedestrian"
FLOORS = {"pedestrian.base": 0, "pedestrian.data": 1, "pedestrian.models": 1, "pedestrian.evaluate": 1,
          "pedestrian.core": 2}
TOOLS = 3  # every other module of the package

# Upward imports that are known and scheduled to go. Delete an entry once its import is gone (the test below
# fails on an entry that no longer matches anything, so this list cannot go stale).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    if module == "pedestrian":
        return 0  # the package's __init__: a docstring and a version
    for prefix, level in FLOORS.items():
        if module == prefix or module.startswith(prefix + "."):
            return level
    return TOOLS


def imports(path: Path) -> set[str]:
    """Every project module `path` imports, anywhere in it; `from pedestrian.x import y` names
    pedestrian.x.y when y is a module, else pedestrian.x."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if _is_module(sub) else base)
    return {m for m in found if m == "pedestrian" or m.startswith("pedestrian.")}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def edges() -> set[tuple[str, str]]:
    return {(module_name(p), m) for p in sorted(PACKAGE.rglob("*.py")) for m in imports(p)}


def test_no_floor_imports_a_higher_one():
    upward = sorted((src, dst, floor(src), floor(dst)) for src, dst in edges() - KNOWN_UPWARD
                    if floor(dst) > floor(src))
    assert not upward, "imports that run upward (module, floor -> imported module, floor):\n" + "\n".join(
        f"  {src} ({fs}) -> {dst} ({fd})" for src, dst, fs, fd in upward)


def test_known_upward_imports_still_exist():
    assert KNOWN_UPWARD <= edges(), f"gone, delete from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - edges())}"


def test_the_walk_sees_imports_at_any_depth():
    """A guard for the parser itself: it finds an import at the top of a module and one inside a function."""
    found = edges()
    assert ("pedestrian.data.folder", "pedestrian.base.errors") in found
    assert ("pedestrian.core.train", "pedestrian.core.bugs") in found  # inside train.build
    assert ("pedestrian.__main__", "pedestrian.core.train") in found  # inside main()


def test_every_folder_of_the_package_is_a_regular_package():
    """setuptools' find_packages (pyproject.toml) skips a folder without __init__.py: a wheel would lack it."""
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert [str(f.relative_to(PACKAGE)) for f in sorted(folders) if not (f / "__init__.py").exists()] == []
