"""Write the project files each ``dvc.yaml`` stage runs into its ``deps:``, from the imports.

DVC reruns a stage only when something it lists changes, so a stage must list every project file
it can run, and no more (listing more reruns it for nothing). Kept by hand, those lists drift with
every import edit. ``python -m dllabs.tooling.code_deps --write`` derives them instead: for each
stage, the closure of its module's imports inside the project (imports inside functions too:
code the stage can run), the package ``__init__`` files on the way that hold code, and the data
files that code names (``resources.files("dllabs").joinpath("data/...")``).

In each stage's ``deps:`` the data come first, as written by hand; the code follows the marker
line :data:`MARKER`, sorted, and is this command's to write. ``--check`` changes nothing and fails,
naming each stage whose list differs and the command to run. ``make lint`` and the tests run the
check. (Which params each stage reads is checked by ``tests/test_dvc_yaml.py`` from a traced run.)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

PROG = "python -m dllabs.tooling.code_deps"
PROJECT_PACKAGES = ("dllabs", "stages")
MARKER = f"# the code it runs: written by `{PROG} --write`"
# A data file the package reads at run time, named in its code.
DATA_FILE = re.compile(r"""joinpath\(["'](data/[\w.]+)["']\)""")


def module_file(dotted: str, root: Path) -> Path | None:
    """``dllabs.data.text`` -> ``root/dllabs/data/text.py`` (or a package's ``__init__.py``)."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of its code (``from a.b import c``
    names module ``a.b.c`` when that is one, else ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT_PACKAGES and module_file(name, root) is not None:
                found.add(name)
    return found


def holds_code(init: Path) -> bool:
    """Whether a package's ``__init__.py`` does more than document the package."""
    body = ast.parse(init.read_text(encoding="utf-8")).body
    docstring = (ast.Expr, ast.Constant)
    return any(
        not (isinstance(node, docstring[0]) and isinstance(node.value, docstring[1]))
        for node in body
    )


@cache
def source_closure(module: str, root: Path) -> frozenset[str]:
    """The project files (relative to ``root``) that ``python -m <module>`` can execute or read."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            prefix = ".".join(parts[:depth])
            if prefix not in seen:
                seen.add(prefix)
                path = module_file(prefix, root)
                if path is not None:
                    todo += sorted(imported_modules(path, root) - seen)
    files: set[str] = set()
    for name in seen:
        path = module_file(name, root)
        if path is None or (path.name == "__init__.py" and not holds_code(path)):
            continue
        files.add(path.relative_to(root).as_posix())
        files.update(f"dllabs/{data}" for data in DATA_FILE.findall(path.read_text()))
    return frozenset(files)


def is_code(dep: str) -> bool:
    """Whether a dep is a project file (the rest are data and other stages' outputs)."""
    return dep.split("/")[0] in PROJECT_PACKAGES


def stage_module(cmd: str) -> str:
    """The ``stages.<name>`` module a stage's command runs."""
    modules = [word for word in cmd.split() if word.startswith("stages.")]
    if len(modules) != 1:
        raise ValueError(f"expected one `stages.<name>` module in the command {cmd!r}")
    return modules[0]


def code_deps(module: str, root: Path) -> list[str]:
    """A stage's code deps in the order they are written: its own module's files first."""
    if module_file(module, root) is None:
        raise ValueError(f"the stage's module {module} is not a file under {root}")
    return sorted(source_closure(module, root), key=lambda f: (not f.startswith("stages/"), f))


# --- dvc.yaml, as text: its comments and layout are kept ------------------------------------------


@dataclass(frozen=True)
class DepsBlock:
    """A stage's ``deps:`` list in the file: its lines ``start`` to ``end`` (exclusive)."""

    stage: str
    start: int
    end: int
    indent: str  # of the list's items ("- " included)


def deps_blocks(lines: list[str]) -> Iterator[DepsBlock]:
    """Every ``deps:`` list under ``stages:`` (a ``foreach`` stage's under its ``do:``)."""
    stage = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := re.fullmatch(r"  (\w+):\s*", line):
            stage = match[1]
        if match := re.fullmatch(r"( {4,6})deps:\s*", line):
            item_indent = match[1] + "  - "
            end = index + 1
            while end < len(lines) and (
                lines[end].startswith(item_indent) or lines[end].startswith(match[1] + "  #")
            ):
                end += 1
            yield DepsBlock(stage, index + 1, end, item_indent)
            index = end
            continue
        index += 1


def rewrite(text: str, root: Path) -> tuple[str, list[str]]:
    """``dvc.yaml``'s text with each stage's code deps derived afresh, and the stages that
    changed. Data deps (and comments about them) stay as they are, before the marker."""
    stages = yaml.safe_load(text)["stages"]
    lines = text.splitlines()
    out: list[str] = []
    changed: list[str] = []
    done = 0
    for block in deps_blocks(lines):
        stage = stages[block.stage]
        cmd = stage["do"]["cmd"] if "foreach" in stage else stage["cmd"]
        items = lines[block.start : block.end]
        kept = [
            line
            for line in items
            if line.strip() != MARKER
            and not (line.startswith(block.indent) and is_code(line[len(block.indent) :].strip()))
        ]
        comment = block.indent.replace("- ", "") + MARKER
        written = [block.indent + dep for dep in code_deps(stage_module(cmd), root)]
        new = [*kept, comment, *written]
        if new != items:
            changed.append(block.stage)
        out += lines[done : block.start] + new
        done = block.end
    out += lines[done:]
    return "\n".join(out) + "\n", changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    action.add_argument("--check", action="store_true", help="fail if they are out of date")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    args = parser.parse_args(argv)
    path = args.root / "dvc.yaml"
    try:
        text = path.read_text(encoding="utf-8")
        new, changed = rewrite(text, args.root.resolve())
    except (OSError, yaml.YAMLError, KeyError, ValueError, SyntaxError) as exc:
        reason = " ".join(str(exc).split())  # YAML's messages span lines: one line, as all errors
        print(f"{PROG}: error: {path}: {reason}", file=sys.stderr)
        return 1
    if args.check:
        if changed:
            print(
                f"{PROG}: {path}: the code deps of {', '.join(changed)} differ from their "
                f"imports; run `{PROG} --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)  # all or nothing: DVC never reads half a file
        print(f"{path}: wrote the code deps of {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
