"""The package's modules import each other in one direction: no cycle, each
module imports on its own, and a page command loads no more than it uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import iommap

PACKAGE = Path(iommap.__file__).parent


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


MODULES = module_names()


def top_level_imports(name: str) -> set[str]:
    """The iommap modules ``name`` imports when it is imported (imports
    inside functions run later, and are left out)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    is_package = path.is_dir()
    source = (path / "__init__.py") if is_package else path.with_suffix(".py")
    tree = ast.parse(source.read_text(), str(source))
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        if target.split(".")[0] == "iommap" and target != name:
            found.add(target)

    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                # `from . import x` imports the module x when there is one.
                sub = f"{base}.{alias.name}"
                add(sub if sub in MODULES else base)
    return found


def test_the_module_list_is_the_package():
    assert "iommap.pagecache" in MODULES
    assert "iommap.cli.frame" in MODULES
    assert "iommap.benchmarks._page_commands" in MODULES
    assert top_level_imports("iommap.cli.commands") >= {
        "iommap.cli.frame",
        "iommap.cli.output",
        "iommap.pagecache",
    }


def test_no_import_cycle():
    graph = {name: top_level_imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*path, name])
        done.add(name)

    for name in MODULES:
        visit(name, [])


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone(name):
    run = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr


def test_a_page_command_loads_no_demo_nor_benchmark(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    code = (
        "import sys\n"
        "from iommap.__main__ import main\n"
        f"status = main(['info', {str(path)!r}])\n"
        "print(status, sorted(m for m in sys.modules if m.startswith('iommap')), file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    status, _, loaded = run.stderr.strip().partition(" ")
    assert status == "0", run.stderr
    assert "benchmarks" not in loaded
    assert "demo" not in loaded
    assert "lockd" not in loaded
    assert "iommap.cli.commands" in loaded


@pytest.mark.parametrize("command", ["info", "warm", "evict"])
def test_a_page_command_imports_neither_typing_nor_shutil(tmp_path, command):
    # Start-up: typing (for annotations only), shutil (argparse asks it for
    # the terminal's width) and the compressors shutil brings are not on a
    # page command's path; fnmatch only where a pattern has brackets.
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    heavy = ["typing", "shutil", "bz2", "lzma", "fnmatch", "json"]
    code = (
        "import sys\n"
        "from iommap.__main__ import main\n"
        f"status = main([{command!r}, '-s', {str(path)!r}])\n"
        f"print(status, [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stderr.strip().splitlines()[-1] == "0 []", run.stderr
