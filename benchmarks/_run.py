"""Running the cases and judging issue 6's targets."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._cases import BCE_LOGITS_FAMILY, CE_FAMILY, VOCABULARY, Case, full_cases, quick_cases
from benchmarks._measure import MIB, relative_error, timed, to_torch, traced_peak, truth
from xe_verify import functional
from xe_verify._blocks import thread_count

#: Issue 6's limits.
MAX_RATIO = 2.0
MAX_TEMPORARY_MIB = 256.0
MAX_RELATIVE_ERROR = 1e-12
#: "Flat" cost per element: the CPU time per element (all threads; wall time per element also changes with the
#: number of threads at work, which is one below PARALLEL_THRESHOLD) of a sweep's slowest point at most this many
#: times its fastest.
MAX_SWEEP_SPREAD = 2.0

#: Timed calls per side for small cases, and the time they may take in all (seconds; less in quick mode).
MAX_REPEATS = 15
REPEAT_BUDGET = 0.25
QUICK_REPEAT_BUDGET = 0.05

#: Seconds to wait before timing one side, so that the other side's threads are asleep.
PAUSE = 0.03

#: Cases from this size on are not warmed up (a warm-up call would double their cost) and are timed twice at most.
LARGE_ELEMENTS = 200_000_000


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _fits(case: Case, copies: float) -> bool:
    """Whether ``copies`` float32 copies of the case's input fit in the memory available now (with a margin)."""
    available = _available_bytes()
    return available is None or copies * case.elements * 4 < 0.8 * available


def environment() -> dict[str, Any]:
    """What the numbers were measured on: versions, CPUs, thread count, the BLAS settings that change numpy."""
    return {
        "threads": thread_count(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "XE_VERIFY_THREADS": os.environ.get("XE_VERIFY_THREADS"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }


def _repeat(
    function: Callable[[], Any], repeats: int, budget: float, large: bool
) -> tuple[list[float], list[float], list[float | None], Any]:
    """Time ``repeats`` calls (more for a small case): wall and CPU seconds, resident-set peaks, the last result.

    One side's calls run together, after a pause: torch's OpenMP workers spin for a few milliseconds after each of
    its calls before they sleep, and would take a core (and CPU time) from the reference's calls right after.
    """
    time.sleep(PAUSE)
    if not large:
        # A warm-up call, which also sizes the repeats: small cases get more of them (up to MAX_REPEATS, within about
        # ``budget`` seconds), because their best time is the one most disturbed by anything else on the machine.
        warm = timed(function)[0]
        repeats = max(repeats, min(MAX_REPEATS, int(budget / max(warm, 1e-6))))
    walls, cpus, peaks, result = [], [], [], None
    for _ in range(repeats):
        wall, cpu, peak, result = timed(function)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(peak)
    return walls, cpus, peaks, result


def _measure(case: Case, repeats: int, budget: float) -> dict[str, Any]:
    rng = np.random.default_rng(20260601)
    arrays = case.make(rng, case.shape)
    tensors = to_torch(arrays)
    large = case.elements >= LARGE_ELEMENTS
    repeats = min(repeats, 2) if large else repeats
    with_torch = _fits(case, case.torch_copies + 0.5)

    def reference() -> Any:
        return case.call(functional, arrays, case.reduction)

    def torch_call() -> Any:
        return case.call(F, tensors, case.reduction)

    ref_times, ref_cpu, ref_rss, result = _repeat(reference, repeats, budget, large)
    torch_times: list[float] = []
    torch_rss: list[float | None] = []
    torch_result = None
    if with_torch:
        torch_times, _, torch_rss, torch_result = _repeat(torch_call, repeats, budget, large)
    peak, output = traced_peak(reference)
    exact = truth(case, arrays)
    ref_s = min(ref_times)
    torch_s = min(torch_times) if torch_times else None
    return {
        "function": case.function,
        "variant": case.variant,
        "shape": list(case.shape),
        "elements": case.elements,
        "dtype": str(arrays["input"].dtype),
        "reduction": case.reduction,
        "family": case.family,
        "threads": thread_count(),
        "input_mib": sum(array.nbytes for array in arrays.values()) / MIB,
        "ref_s": ref_s,
        "torch_s": torch_s,
        "ratio": ref_s / torch_s if torch_s else None,
        "ref_times": ref_times,
        "torch_times": torch_times,
        "ref_ns_per_element": ref_s / case.elements * 1e9,
        "ref_cpu_s": min(ref_cpu),
        "ref_cpu_ns_per_element": min(ref_cpu) / case.elements * 1e9,
        "torch_ns_per_element": torch_s / case.elements * 1e9 if torch_s else None,
        "ref_peak_mib": peak,
        "ref_output_mib": output,
        "ref_rss_peak_mib": max((value for value in ref_rss if value is not None), default=None),
        "torch_rss_peak_mib": max((value for value in torch_rss if value is not None), default=None),
        "rel_error": relative_error(result, exact),
        "torch_rel_error": relative_error(torch_result, exact) if torch_result is not None else None,
        "note": None if with_torch else "torch not run: its temporaries would not fit in the memory available",
    }


def _warm_up() -> None:
    """One small call of every loss on both sides: the first call in a process pays for imports and setup."""
    for case in quick_cases():
        small = Case(**{**case.__dict__, "shape": tuple(min(size, 64) for size in case.shape)})
        arrays = small.make(np.random.default_rng(0), small.shape)
        small.call(functional, arrays, small.reduction)
        small.call(F, to_torch(arrays), small.reduction)


def run(
    quick: bool = True,
    *,
    repeats: int = 3,
    max_elements: int | None = None,
    only: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every case (``quick``: small sizes, a few seconds in all) and return one record per case.

    torch runs with the reference's thread count (``XE_VERIFY_THREADS``, else the CPUs available); ``progress`` is
    called with each record as soon as it is measured. A case whose inputs would not fit in the memory available is
    left out, and torch is left out of one whose temporaries would not (see the record's ``note``). See the package
    docstring for the records' keys.
    """
    torch.set_num_threads(thread_count())
    cases = quick_cases() if quick else full_cases()
    cases = [
        case
        for case in cases
        if (max_elements is None or case.elements <= max_elements) and (only is None or only in case.function)
    ]
    _warm_up()
    records = []
    for case in cases:
        if not _fits(case, 3.0):
            continue
        record = _measure(case, repeats, QUICK_REPEAT_BUDGET if quick else REPEAT_BUDGET)
        records.append(record)
        if progress is not None:
            progress(record)
    return records


def _find(records: Iterable[dict[str, Any]], function: str, variant: str, shape: list[int]) -> dict[str, Any] | None:
    return next(
        (r for r in records if (r["function"], r["variant"], r["shape"]) == (function, variant, shape)),
        None,
    )


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6's targets, each with the measured value, its limit and whether it is met (None: not measured)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float) -> None:
        checks.append(
            {"target": name, "value": value, "limit": limit, "met": None if value is None else value <= limit}
        )

    ce = _find(records, "cross_entropy", "class index, mean", [4096, VOCABULARY])
    check("cross_entropy 4096x32000 time / torch", ce and ce["ratio"], MAX_RATIO)
    check("cross_entropy 4096x32000 relative error vs torch float64", ce and ce["rel_error"], MAX_RELATIVE_ERROR)
    for function in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        record = _find(records, function, "mean", [10**8])
        check(f"{function} 1e8 time / torch", record and record["ratio"], MAX_RATIO)
    check(
        "largest temporary memory of any loss (MiB)",
        max((record["ref_peak_mib"] for record in records), default=None),
        MAX_TEMPORARY_MIB,
    )
    for family in (CE_FAMILY, BCE_LOGITS_FAMILY):
        points = [record for record in records if record["family"] == family]
        spread = None
        if len(points) >= 2:
            per_element = [record["ref_cpu_ns_per_element"] for record in points]
            spread = max(per_element) / min(per_element)
        check(f"{family}: slowest / fastest CPU ns per element over the sweep", spread, MAX_SWEEP_SPREAD)
    return checks
