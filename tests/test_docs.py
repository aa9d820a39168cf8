"""Every code block of README.md, CONTRIBUTING.md and docs/*.md runs, so the
docs cannot rot.

Each Markdown file becomes one script, run in a fresh directory as a user
would run it: its ```python blocks verbatim and in order (so a guide can
build on its earlier blocks, and a multiprocessing example can spawn), its
```console blocks as shell commands whose exit status must be 0 and whose
output must match the block (`...` matches anything). The examples/ scripts
run too. A block in any other language fails the test: nothing in the
docs goes unchecked.
"""

from __future__ import annotations

import ast
import inspect
import mmap
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import iommap

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
RUNNABLE = {"python", "console"}
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

# Defined at the top of each generated script; names start with an
# underscore so they cannot clash with the docs' own.
CONSOLE_RUNNER = r"""
import os as _os
import re as _re
import subprocess as _subprocess
import sys as _sys

_EXACT = _os.environ.get("IOMMAP_DOCS_EXACT") == "1"


def _lines(text):
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _console(block, where):
    commands = []
    for line in block.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        elif line.strip():
            raise SystemExit(f"{where}: output before the first $ command")
    for command, expected in commands:
        done = _subprocess.run(
            command, shell=True, executable="/bin/bash", text=True,
            stdout=_subprocess.PIPE, stderr=_subprocess.STDOUT,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"{where}: `{command}` exited {done.returncode}:\n{done.stdout}"
            )
        want, got = _lines("\n".join(expected)), _lines(done.stdout)
        pattern = ".*?".join(_re.escape(part) for part in want.split("..."))
        if _EXACT and not _re.fullmatch(pattern, got, _re.S):
            raise SystemExit(
                f"{where}: `{command}` printed\n{got}\n--- the docs say\n{want}"
            )
"""


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each fenced block."""
    text = path.read_text()
    return [
        (match[1], match[2], text.count("\n", 0, match.start()) + 1)
        for match in FENCE.finditer(text)
    ]


def script_for(path: Path) -> str:
    name = path.relative_to(ROOT)
    parts = [CONSOLE_RUNNER]
    for language, code, line in blocks(path):
        where = f"{name}:{line}"
        parts.append(f"# ---- {where}")
        if language == "python":
            parts.append(code)
        else:
            parts.append(f'if __name__ == "__main__":\n    _console({code!r}, {where!r})\n')
    return "\n".join(parts)


def page_cache_can_drop(directory: Path) -> bool:
    probe = directory / ".probe"
    probe.write_bytes(b"x" * mmap.PAGESIZE)
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        if not hasattr(os, "posix_fadvise"):
            return False
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    with iommap.open(probe, "read") as m:
        dropped = m.resident() == 0
    probe.unlink()
    return dropped


def environment(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    # `iommap` and `python` in console blocks are this interpreter's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Outputs in the docs are for 4 KiB pages and a file system that can drop
    # pages from the cache; elsewhere only the exit statuses are checked.
    exact = mmap.PAGESIZE == 4096 and page_cache_can_drop(directory)
    env["IOMMAP_DOCS_EXACT"] = "1" if exact else "0"
    env.pop("PYTHONSTARTUP", None)
    env["COLUMNS"] = "100"
    return env


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_is_one_the_tests_run(path: Path) -> None:
    unchecked = [(lang, line) for lang, _, line in blocks(path) if lang not in RUNNABLE]
    assert unchecked == [], f"{path.name}: blocks no test runs (language, line): {unchecked}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_runs(path: Path, tmp_path: Path) -> None:
    if not blocks(path):
        pytest.skip("no code blocks")
    script = tmp_path / (path.stem + "_blocks.py")
    script.write_text(script_for(path))
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=environment(work),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{path.name} (as {script}) failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path, tmp_path: Path) -> None:
    if path.name == "typing_misuse.py":
        pytest.skip("for the type checker only: its calls are wrong on purpose")
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def public_callables() -> list[tuple[str, object]]:
    names = [(f"iommap.{n}", getattr(iommap, n)) for n in iommap.__all__ if n != "__version__"]
    methods = [
        (f"MappedFile.{n}", getattr(iommap.MappedFile, n))
        for n in dir(iommap.MappedFile)
        if not n.startswith("_") and callable(getattr(iommap.MappedFile, n))
    ]
    return names + methods


@pytest.mark.parametrize(
    "name, obj", [pytest.param(name, obj, id=name) for name, obj in public_callables()]
)
def test_public_callables_have_help(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert len(doc) > 20, f"{name} needs a docstring for help()"
    if inspect.isroutine(obj):
        inspect.signature(obj)  # a parseable text signature, not just prose


def stub_docstrings() -> dict[str, str]:
    """The docstrings of _core.pyi's functions and MappedFile's methods, by name."""
    # The installed stub: the one a wheel ships, whether or not a source tree is near.
    tree = ast.parse((Path(iommap.__file__).parent / "_core.pyi").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "MappedFile":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and ast.get_docstring(item):
                    found[f"MappedFile.{item.name}"] = ast.get_docstring(item) or ""
        elif isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
            found[f"iommap.{node.name}"] = ast.get_docstring(node) or ""
    return found


def summary(doc: str) -> str:
    """The first paragraph, on one line, without Markdown's backquotes."""
    return " ".join(doc.split("\n\n")[0].replace("`", "").split())


@pytest.mark.parametrize(
    "name, obj",
    [
        pytest.param(name, obj, id=name)
        for name, obj in public_callables()
        if inspect.isroutine(obj)
    ],
)
def test_api_page_and_help_agree(name: str, obj: object) -> None:
    """docs/api.md is built from the stubs' docstrings, help() shows the C
    core's: each call's summary is the same in both."""
    stubs = stub_docstrings()
    assert name in stubs, f"{name} has no docstring in _core.pyi, so no entry on the API page"
    assert summary(stubs[name]) == summary(inspect.getdoc(obj) or "")
