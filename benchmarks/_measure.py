"""How things are measured: wall time, peak memory, and the error against torch in float64.

Time
    ``time.perf_counter`` around one call; the reference and torch alternate, ``repeats`` times each (more for small
    cases), on the same arrays, and the best of each is kept (the minimum is the least disturbed by other processes
    on the machine). The reference's CPU time (``time.process_time``, all its threads) is kept too: the work per
    element, which should not grow with the size, whatever the number of threads doing it.
Memory of the reference
    ``tracemalloc``, in a separate call after the timed ones (tracing slows allocation down). numpy reports every
    array buffer and nditer buffer to it, from any thread, so the figure includes the worker threads' workspaces; the
    calling thread's cached workspace is dropped first so that it is counted too. The peak is taken above what was
    allocated before the call (the inputs), and the result array, if any, is subtracted: what is left is the
    temporary memory.
Memory of torch (and a cross-check of the reference's)
    The process's resident-set high-water mark (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) around the
    timed calls, above the resident set before the call. torch's allocations are invisible to tracemalloc. The
    figure can be low where an allocator reuses memory it already holds, never high; ``None`` where unavailable.
Error
    Relative to torch's float64 result on the same (float32) input converted to float64: ``|ref - truth| / |truth|``
    for a scalar, the largest elementwise relative error for an array. A mean's truth is summed chunk by chunk with
    ``math.fsum``, so that a 10^9-element truth needs no 8 GB float64 copy.
"""

from __future__ import annotations

import math
import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._cases import Arrays, Case
from xe_verify import _blocks

MIB = float(1 << 20)

#: Rows per chunk of the float64 truth: about 2^24 elements, 128 MiB in float64.
TRUTH_CHUNK_ELEMENTS = 1 << 24

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_high_water_mark() -> int | None:
    """Reset the resident-set high-water mark to the current resident set; return that, in KiB."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def _high_water_mib(before_kib: int | None) -> float | None:
    peak = _status_kib("VmHWM")
    if before_kib is None or peak is None:
        return None
    return max(0, peak - before_kib) / 1024


def timed(function: Callable[[], Any]) -> tuple[float, float, float | None, Any]:
    """Wall seconds of one call, CPU seconds (all threads), the resident-set peak above the start (MiB), the result."""
    before = _reset_high_water_mark()
    cpu = time.process_time()
    start = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - start
    return elapsed, time.process_time() - cpu, _high_water_mib(before), result


def traced_peak(function: Callable[[], Any]) -> tuple[float, float]:
    """Temporary memory (MiB) of one call as tracemalloc sees it, and the size of its result (MiB)."""
    _blocks.release_workspace()
    tracemalloc.start()
    try:
        result = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    output = result.nbytes if isinstance(result, np.ndarray) else 0
    return max(0, peak - output) / MIB, output / MIB


def to_torch(arrays: Arrays) -> dict[str, torch.Tensor]:
    """Zero-copy torch views of the arrays."""
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def _to_torch64(arrays: Arrays) -> dict[str, torch.Tensor]:
    return {
        name: torch.from_numpy(array.astype(np.float64) if array.dtype.kind == "f" else array)
        for name, array in arrays.items()
    }


def truth(case: Case, arrays: Arrays) -> float | np.ndarray:
    """torch's float64 result on the arrays converted to float64 (a mean by chunks of rows, see the module doc)."""
    import torch.nn.functional as F

    if case.denominator is None:
        return case.call(F, _to_torch64(arrays), case.reduction).numpy()
    rows = arrays["input"].shape[0]
    per_row = max(1, arrays["input"].size // rows)
    step = max(1, TRUTH_CHUNK_ELEMENTS // per_row)
    sums = []
    for start in range(0, rows, step):
        chunk = {
            name: array if name in case.per_class else array[start : start + step] for name, array in arrays.items()
        }
        sums.append(float(case.call(F, _to_torch64(chunk), "sum")))
    return math.fsum(sums) / case.denominator(arrays)


def relative_error(value: Any, exact: float | np.ndarray) -> float:
    """``|value - exact| / |exact|``; for arrays the largest over elements (computed by chunks of rows)."""
    if isinstance(exact, float):
        return abs(float(value) - exact) / abs(exact) if exact else abs(float(value))
    result = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    worst = 0.0
    step = max(1, TRUTH_CHUNK_ELEMENTS // max(1, exact[0].size if exact.ndim else 1))
    for start in range(0, exact.shape[0] if exact.ndim else 1, step):
        reference = exact[start : start + step].astype(np.float64)
        difference = np.abs(result[start : start + step].astype(np.float64) - reference)
        scale = np.abs(reference)
        np.maximum(scale, np.finfo(np.float64).tiny, out=scale)
        worst = max(worst, float(np.max(difference / scale)))
    return worst
