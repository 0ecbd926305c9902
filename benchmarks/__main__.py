"""``python -m benchmarks [--quick] [--json PATH] ...``: print the table, judge the targets, write the JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import DEFAULT_JSON, environment, run, targets

COLUMNS = (
    ("function", 64),
    ("shape", 14),
    ("elements", 9),
    ("ref s", 8),
    ("torch s", 8),
    ("ratio", 6),
    ("ref MiB", 8),
    ("torch MiB", 9),
    ("ns/el", 6),
    ("rel. error", 10),
)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(record: dict[str, Any]) -> str:
    cells = (
        f"{record['function']} ({record['variant']})",
        "x".join(str(size) for size in record["shape"]),
        f"{record['elements']:.2e}",
        _number(record["ref_s"], ".4f"),
        _number(record["torch_s"], ".4f"),
        _number(record["ratio"], ".2f"),
        _number(record["ref_peak_mib"], ".1f"),
        _number(record["torch_rss_peak_mib"], ".0f"),
        _number(record["ref_ns_per_element"], ".2f"),
        _number(record["rel_error"], ".1e"),
    )
    return "  ".join(
        cell.rjust(width) if index else cell.ljust(width)
        for index, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
    )


def _header() -> str:
    return "  ".join(name.rjust(width) if index else name.ljust(width) for index, (name, width) in enumerate(COLUMNS))


def _sweeps(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for family in dict.fromkeys(record["family"] for record in records if record["family"]):
        points = sorted((record for record in records if record["family"] == family), key=lambda r: r["elements"])
        lines.append(f"sweep {family}: ns per element: reference wall, reference CPU (all threads) | torch wall")
        lines.extend(
            f"  {point['elements']:>9.2e}  {point['ref_ns_per_element']:6.2f}  {point['ref_cpu_ns_per_element']:6.2f}"
            f" | {_number(point['torch_ns_per_element'], '6.2f')}"
            for point in points
        )
    return lines


def _targets(checks: list[dict[str, Any]]) -> list[str]:
    verdicts = {True: "met", False: "NOT MET", None: "not measured"}
    lines = []
    for check in checks:
        value = _number(check["value"], ".3g")
        lines.append(f"  {verdicts[check['met']]:>12}  {check['target']}: {value} (limit {check['limit']:g})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only: a few seconds (for the docs build)")
    parser.add_argument("--json", default=DEFAULT_JSON, metavar="PATH", help=f"where to write (default {DEFAULT_JSON})")
    parser.add_argument("--repeats", type=int, default=3, metavar="K", help="timed calls per side, best kept")
    parser.add_argument("--max-elements", type=float, default=None, metavar="N", help="skip larger cases (e.g. 2e8)")
    parser.add_argument("--only", default=None, metavar="NAME", help="only functions whose name contains NAME")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a measured target is not met")
    options = parser.parse_args(argv)

    settings = environment()
    print(
        f"xe_verify vs torch {settings['torch']}, numpy {settings['numpy']}: {settings['threads']} threads on each "
        f"side ({settings['cpus']} CPUs); float32 inputs; best of {options.repeats} or more"
    )
    print(_header())
    started = time.perf_counter()
    records = run(
        options.quick,
        repeats=options.repeats,
        max_elements=None if options.max_elements is None else int(options.max_elements),
        only=options.only,
        progress=lambda record: print(_row(record), flush=True),
    )
    elapsed = time.perf_counter() - started
    print()
    print("\n".join(_sweeps(records)))
    checks = targets(records)
    print("\nIssue 6 targets (ref peak: tracemalloc, above the inputs, result excluded; torch MiB: RSS high-water):")
    print("\n".join(_targets(checks)))
    path = Path(options.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"environment": settings, "quick": options.quick, "seconds": elapsed, "results": records}
    document["targets"] = checks
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\n{len(records)} cases in {elapsed:.0f} s; written to {path}")
    return 1 if options.check and any(check["met"] is False for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
