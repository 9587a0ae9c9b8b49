"""The `minislm` command line: one subcommand per module in `minislm/commands/`.

Each command module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
A `MinislmError` — or an OSError (permission denied, disk full) or MemoryError —
is printed as one line and exits with status 2 (`--debug` shows the traceback);
Ctrl-C stops cleanly with status 130. A command line argparse refuses is one
line too (status 2): the usage block is what `--help` is for. Warnings raised while
a command runs (NumPy's overflow warnings, say) are held back and shown after it
succeeds; when it fails, its one error line says what went wrong.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from . import commands
from .errors import MinislmError


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `minislm: error: COMMAND: message (see ... --help)`."""

    def error(self, message):
        """Exit with status 2 and one `minislm: error: COMMAND: message` line pointing to --help."""
        command = self.prog.removeprefix("minislm").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"minislm: error: {where}{message} (see 'minislm {where and command + ' '}"
                     "--help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per module of `minislm.commands` that defines NAME."""
    parser = Parser(prog="minislm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if not hasattr(module, "NAME"):
            continue
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        # SUPPRESS: without it the subcommand's default False would overwrite `minislm --debug`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]) and return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.__stdout__, sys.__stderr__):   # a non-UTF-8 folder name (bytes on
        if hasattr(stream, "reconfigure"):                # Linux) prints as its own bytes
            stream.reconfigure(errors="surrogateescape")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:           # --help (0) or a refused command line (2)
        return e.code if isinstance(e.code, int) else 2
    status, caught = None, []
    try:
        with warnings.catch_warnings(record=True) as caught:
            status = run(args)
    finally:           # warnings (NumPy's overflow ones) follow a success; an error is one line
        if status == 0 or args.debug:
            for w in caught:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return status


def run(args) -> int:
    """The command's status; a refusal printed as one `minislm: error:` line (status 2)."""
    try:
        return int(args._run(args) or 0)
    except MinislmError as e:
        if args.debug:
            raise
        _close_progress_bars()
        print(f"minislm: error: {e}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as e:   # disk full, permission denied, out of memory
        if args.debug:
            raise
        _close_progress_bars()
        what = "out of memory" if isinstance(e, MemoryError) else str(e)
        print(f"minislm: error: {what} ({type(e).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minislm: interrupted; finished files are complete, partial ones were not "
              "written", file=sys.stderr)
        return 130

def _close_progress_bars() -> None:
    """Close the bars an error interrupted, so the error line does not continue a bar's."""
    from tqdm import tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
