"""Command line: a thin argparse layer over plain functions (which tests call directly).

`parser` builds the argparse tree, `commands` holds one function per command, `render` the text
they print. `harness.cli:main` is the console entry point.
"""

from __future__ import annotations

import sys

from harness.cli.commands import load_variant_config
from harness.cli.parser import build_parser, parse_args

__all__ = ["build_parser", "load_variant_config", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected failure is one `error:` line (exit 2: bad input, 1: runtime
    failure, 130: interrupted), a bug is a summary line plus its traceback (harness/failures.py)."""
    from harness.envvars import scoped_env
    from harness.failures import DEBUG_ENV, report

    args = parse_args(build_parser(), argv)
    try:
        from harness.cli.commands import command_env

        # --debug: torchrun ranks and executor jobs report the same way. Set for this command only.
        with scoped_env(command_env() | ({DEBUG_ENV: "1"} if args.debug else {})):
            from harness.references import Resolver

            # A command outside any recipe (`train CONFIG`, `eval variant:…`) resolves `variant:` references
            # from $HARNESS_RECIPES and ./recipes; recipe commands put their own resolver in effect inside.
            with Resolver().active():
                return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place failures become messages
        return report(exc, debug=args.debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
