"""The ``res2net`` command: argument parsing only; every command calls the library.

Each subcommand lives in its own module here with ``register(subparsers)``, which adds its
parser and sets ``func`` to a function taking the parsed arguments and returning an exit
code. Modules are imported only to build the parser; heavy imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing

# Subcommand modules, in the order `res2net --help` lists them.
COMMANDS = [
    "models", "convert", "download", "predict", "serve",
    "train", "eval", "digits", "export", "bench",
]  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse's parser with a user error in one line (what was wrong, where help is),
    instead of the usage block before it; exit code 2 as argparse's."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):
        # Python 3.11's argparse drops a "--" given as a flag's value (`--config=--`) and
        # hands the command an empty list instead of a string (found by
        # tests/test_cli_hostile.py); refuse it as the missing value it became.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected one value, got '--'")
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    """The full ``res2net`` argument parser."""
    from res2net import __version__

    parser = Parser(
        prog="res2net",
        description="Res2Net image classifiers: models, weights, predict, train, deploy, serve.",
    )
    parser.add_argument("--version", action="version", version=f"res2net {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"res2net.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Library errors are written to be read by a person: show them without a traceback.
        # OSError: a path or address the user gave (a folder under a file, no permission,
        # nothing listening) that a check upstream did not word better.
        print(f"res2net {args.command}: error: {_in_flags(exc)}", file=sys.stderr)
        return 2


def _in_flags(exc: Exception) -> str:
    """A library error in the command line's words: the library names Python arguments."""
    resolve = sys.modules.get("res2net.resolve")  # not imported: not its error
    if resolve is not None and isinstance(exc, resolve.ModelSourceError):
        return exc.cli_message
    return f"{exc}{_flag_hint(exc)}"


def _flag_hint(exc: Exception) -> str:
    """The command line's words for a library error's advice, which names Python arguments."""
    from res2net.weights.hub import WeightDownloadError

    if isinstance(exc, WeightDownloadError):
        return (
            "\nOn the command line, --weights path/to/file uses a local copy instead of the "
            "download (`res2net export` also takes --random-weights, to try a pipeline)."
        )
    return ""
