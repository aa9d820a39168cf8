"""What every command shares: the parser, usage errors, the options of the
page commands, and running a command into an exit status.

``iommap.__main__`` builds the main parser from these; each command module
registers itself on it and sets ``run(args) -> exit status``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

from .output import DEFAULT_COLUMNS, Output, OutputError, dumps, parse_columns, warn
from .paths import parse_range, parse_size_arg
from .status import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_STATUS_HELP,
    EXIT_TERMINATED,
    EXIT_USAGE,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing only for the type checker: a faster start-up
    from typing import Any, NoReturn

PAGE_COMMANDS = ("info", "warm", "evict", "lock")

MAIN_EPILOG = f"""\
examples:
  iommap info data.bin             how much of data.bin is in memory
  iommap info -s /var/lib/db       totals for a whole tree
  iommap info -v --json *.idx      per-file residency maps, as JSON
  iommap warm data.bin             read data.bin into the page cache
  iommap evict data.bin            drop it from the page cache
  iommap lock data.bin             keep it in memory until Ctrl-C
  iommap demo                      watch a SigbusError being survived
  iommap bench --quick             iommap against the standard library

'iommap COMMAND --help' tells more about each command.

{EXIT_STATUS_HELP}
"""


# ---- usage errors --------------------------------------------------------------------


class UsageError(Exception):
    """Bad usage of one (sub)command; carries the parser to show the usage of."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises instead of exiting, so the caller
    can show the sub-command's usage (or a JSON error document)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # argparse's formatter asks shutil for the terminal's width, and
        # importing shutil (with bz2, lzma and fnmatch) cost `iommap info`
        # more than parsing its arguments: argparse makes a formatter for
        # every add_argument. The same width, given, without shutil.
        make = kwargs.get("formatter_class", argparse.HelpFormatter)

        def sized(*args: Any, **kwargs: Any) -> argparse.HelpFormatter:
            kwargs.setdefault("width", help_width())
            formatter: argparse.HelpFormatter = make(*args, **kwargs)
            return formatter

        kwargs["formatter_class"] = sized
        super().__init__(*args, **kwargs)


def help_width() -> int:
    """argparse's help width: shutil.get_terminal_size's columns (COLUMNS,
    else the terminal behind stdout, else 80), less its margin of 2."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; arguments no parser knows are blamed on the sub-command
    they follow, whose usage is then shown (argparse blames the main one)."""
    # vmtouch writes `-p -5M` (the first 5 MiB); argparse would take -5M for
    # an option, since -0 is one.
    fixed: list[str] = []
    for arg in argv:
        if fixed and fixed[-1] in ("-p", "--range") and arg.startswith("-"):
            fixed[-1] = f"--range={arg}"
        else:
            fixed.append(arg)
    args, extra = parser.parse_known_args(fixed)
    if extra:
        owner: argparse.ArgumentParser = getattr(args, "parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def report_usage_error(error: UsageError, argv: Sequence[str]) -> int:
    """Print a usage error as the command's output format asks; return 2."""
    parser = error.parser
    command = parser.prog.split()[-1] if " " in parser.prog else None
    err = sys.stderr
    if err is not None:
        err.write(parser.format_usage())
        err.write(f"{parser.prog}: error: {error.message}\n")
    if command in PAGE_COMMANDS and ("--json" in argv or "-J" in argv):
        doc = {
            "command": command,
            "error": {"reason": "usage", "message": error.message},
            "usage": parser.format_usage().strip(),
        }
        with Output() as out:
            out.write(dumps(doc) + "\n")
        return out.status or EXIT_USAGE
    return EXIT_USAGE


# ---- the page commands' options ------------------------------------------------------


def new_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}\n\n{EXIT_STATUS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser, command=name)
    return parser


def add_flag(group: argparse._ActionsContainer, *names: str, help: str) -> None:
    """An option that takes no value and is False unless given."""
    group.add_argument(*names, action="store_true", help=help)


def add_walk_options(parser: argparse.ArgumentParser, *, summary: bool = True) -> None:
    """The file selection every page command shares (vmtouch's crawl), and
    the output options (``summary=False``: no -s, for lock, which prints no
    table to leave out)."""
    parser.add_argument(
        "files",
        nargs="*",
        metavar="PATH",
        help="files, and directories to walk (recursively); - is not stdin, see -b",
    )
    group = parser.add_argument_group("choosing files (as vmtouch)")
    add_flag(
        group,
        "-f",
        "--follow-symlinks",
        help="follow symlinks met inside directories (those named are always followed)",
    )
    add_flag(
        group, "-F", "--one-file-system", help="do not enter directories on another file system"
    )
    group.add_argument(
        "-i",
        "--ignore",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out files and directories whose name matches (shell pattern; repeatable)",
    )
    group.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only files whose name matches (shell pattern; repeatable)",
    )
    group.add_argument(
        "-m",
        "--max-size",
        type=parse_size_arg,
        metavar="SIZE",
        help="leave out files larger than SIZE (4096, 4K, 100M, 1.5G)",
    )
    group.add_argument(
        "-b",
        "--files-from",
        metavar="LIST",
        help="read more paths from the file LIST (- for stdin), one a line",
    )
    add_flag(
        group,
        "-0",
        "--null",
        help="paths in LIST end with a NUL byte, not a newline (find -print0)",
    )
    add_flag(
        group,
        "--count-hard-links",
        help="count a file each time it is reached (by default an inode counts once)",
    )
    group.add_argument(
        "-p",
        "--range",
        type=parse_range,
        metavar="RANGE",
        help="only this part of each file: LO-HI, LO-, -HI or SIZE (the first SIZE bytes)",
    )
    out = parser.add_argument_group("output")
    add_flag(
        out, "-J", "--json", help="print one JSON document, on one line of stdout, instead of text"
    )
    add_flag(
        out,
        "-q",
        "--quiet",
        help="print nothing on stdout but --json's document (errors still go to stderr)",
    )
    if summary:
        add_flag(
            out,
            "-s",
            "--summary",
            help="print only the totals, not a line per file (vmtouch's default output)",
        )


def add_table_options(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("table (as fincore)")
    group.add_argument(
        "-o",
        "--output",
        type=parse_columns,
        metavar="COLUMNS",
        help=f"columns to show, comma-separated, or +COLUMNS to add to the default "
        f"({','.join(DEFAULT_COLUMNS[command])}); see the list below",
    )
    group.add_argument(
        "--bytes", action="store_true", help="sizes in bytes rather than in KiB, MiB, ..."
    )
    group.add_argument(
        "-r", "--raw", action="store_true", help="cells separated by one space, not aligned"
    )
    group.add_argument("-n", "--noheadings", action="store_true", help="no header line")


# ---- running a command ---------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that a command stopped
    either way ends the same: what was done so far, then its status."""


class _SigtermStop:
    """What :func:`sigterm_interrupts` yields: :meth:`hold` ignores SIGTERM
    from then on (while a command writes the end of its output)."""

    def hold(self) -> None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[_SigtermStop]:
    """While it lasts, SIGTERM raises :class:`Terminated`, once (a second
    one is ignored while the command finishes its output); then SIGTERM
    gets its action back."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: SIGTERM keeps its action
        yield _SigtermStop()
        return
    try:
        yield _SigtermStop()
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command, turning Ctrl-C and output failures into exit statuses."""
    try:
        return run(args)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            warn("terminated")
            return EXIT_TERMINATED
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`iommap ... | head`). Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        Output()._silence()
        return EXIT_BROKEN_PIPE
    except OutputError as error:
        if error.message:
            warn(error.message)
        return error.status


def main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and run; usage errors show the sub-command's usage (or JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(parser, argv)
    except UsageError as error:
        return report_usage_error(error, argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run_command(run, args)
    except UsageError as error:
        return report_usage_error(error, argv)
