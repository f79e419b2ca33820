"""The help formatter every subcommand uses: defaults shown, engines of this machine listed.

Not a subcommand (``COMMANDS`` does not name it). ``%(engines)s`` in a help text becomes the
engines that can run here, found only when help is printed, so building the parser stays
free of torch and the runtimes' imports.
"""

from __future__ import annotations

import argparse
import copy


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults-showing formatter, minus the noise: no "(default: None)" or
    "(default: False)", and no second default where the text already gives one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if not action.option_strings:
            return text
        return text + " (default: %(default)s)"

    def _expand_help(self, action: argparse.Action) -> str:
        if "%(engines)s" in (action.help or ""):
            from res2net.deploy.runtimes import available_engines

            action = copy.copy(action)
            action.help = action.help.replace("%(engines)s", ", ".join(available_engines()))
        return super()._expand_help(action)
