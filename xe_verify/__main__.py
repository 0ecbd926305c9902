"""Command line: ``python -m xe_verify accuracy`` prints the accuracy table (see :mod:`xe_verify.accuracy`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence


def _accuracy(arguments: argparse.Namespace) -> int:
    from xe_verify.accuracy import accuracy_table, format_table

    table = accuracy_table(rows=arguments.rows, seed=arguments.seed)
    if arguments.json:
        print(json.dumps([dataclasses.asdict(row) for row in table], indent=1))
    else:
        print(format_table(table))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m xe_verify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    accuracy = commands.add_parser(
        "accuracy",
        help="measure the reference and torch against the exact oracle",
        description="Max and median errors (float64 ULPs, relative) of the reference and of torch in each dtype, "
        "per function and input regime, on reduction='none' outputs. Deterministic.",
    )
    accuracy.add_argument("--rows", type=int, default=64, help="rows of 8 classes per function and regime")
    accuracy.add_argument("--seed", type=int, default=20240604, help="base seed")
    accuracy.add_argument("--json", action="store_true", help="print the rows as JSON instead of Markdown")
    accuracy.set_defaults(run=_accuracy)
    arguments = parser.parse_args(argv)
    status: int = arguments.run(arguments)
    return status


if __name__ == "__main__":
    sys.exit(main())
