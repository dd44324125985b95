"""The ``dojo`` command. Thin: each subcommand parses its arguments and calls one function.

Each pillar registers its subcommands in its own ``_add_*`` function below, so the heavy imports
(torch, PyAV, DuckDB) happen only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from opendojo import __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"opendojo {__version__}")
    return 0


# --- numerics -------------------------------------------------------------------------------
def _add_numerics(sub: argparse._SubParsersAction) -> None:
    pass


# --- data -----------------------------------------------------------------------------------
def _add_data(sub: argparse._SubParsersAction) -> None:
    pass


# --- train ----------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    pass


# --- hw + simulate --------------------------------------------------------------------------
def _add_hw_sim(sub: argparse._SubParsersAction) -> None:
    pass


# --- demo -----------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dojo", description="OpenDojo: Tesla's Dojo training system in software."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the OpenDojo version")
    p.set_defaults(func=_cmd_version)
    for add in (_add_numerics, _add_data, _add_train, _add_hw_sim, _add_demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
