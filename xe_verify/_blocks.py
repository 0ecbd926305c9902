"""Row blocks: bounded memory and all the cores, with results that do not depend on the thread count.

Every softmax-based loss works on *rows* of classes. A :class:`RowLayout` presents an input of shape ``(C,)``,
``(N, C)`` or ``(N, C, d1, ..., dk)`` as a 3-D view ``(B, S, C)`` (row ``r = b * S + s``, in the order of the
target's flattened positions) without copying it, and cuts it into blocks of at most ``BLOCK_ELEMENTS`` elements.
Each block is converted to float64 into a per-thread workspace and reduced to per-row results, which are written to
their own slice of an output; reductions over rows happen afterwards, on the whole per-row vector. Block boundaries
depend only on the shape, and no row's arithmetic depends on its neighbours, so the results are bit-for-bit the
same whatever the number of threads (numpy releases the GIL inside its loops, so the threads really run in parallel).

Memory: each thread holds at most ``WORKSPACE_BUFFERS`` float64 buffers of one block, 512 KiB each: a few MiB in
all, whatever the input size. A row of more than ``BLOCK_ELEMENTS`` classes is one block on its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from xe_verify._arrays import Float64Array

Item = TypeVar("Item")

#: Elements per block: 64 Ki float64 values are 512 KiB, so a block's few buffers stay in the core's cache.
BLOCK_ELEMENTS = 1 << 16

#: Workspace buffers a kernel may use per thread (the block, four temporaries, a second operand).
WORKSPACE_BUFFERS = 6

#: Below this many elements a call runs on the calling thread: a pool costs more than it saves.
PARALLEL_THRESHOLD = 1 << 20


def thread_count() -> int:
    """Threads for blocked work: ``XE_VERIFY_THREADS`` if set, else the CPUs this process may use (at most 16)."""
    configured = os.environ.get("XE_VERIFY_THREADS")
    if configured:
        return max(1, int(configured))
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 16))


_local = threading.local()


def workspace(index: int, rows: int, columns: int) -> Float64Array:
    """The calling thread's buffer number ``index``, shaped ``(rows, columns)`` (contents undefined)."""
    buffers: dict[int, Float64Array] = _local.__dict__.setdefault("buffers", {})
    size = rows * columns
    buffer = buffers.get(index)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, BLOCK_ELEMENTS))
        buffers[index] = buffer
    return buffer[:size].reshape(rows, columns)


class RowLayout:
    """An input of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1..dk)`` seen as rows of ``C`` classes, blockwise."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        if array.ndim == 1:
            view = array[None, None, :]
        elif array.ndim == 2:
            view = array[None, :, :]
        else:
            batch, classes = array.shape[:2]
            positions = int(np.prod(array.shape[2:], dtype=np.int64))
            view = array.reshape(batch, classes, positions).transpose(0, 2, 1)
        self.view = view
        self.batches, self.positions, self.classes = view.shape
        self.rows = self.batches * self.positions

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(b, s0, s1)`` triples covering every row once, in row order."""
        per_block = max(1, BLOCK_ELEMENTS // max(self.classes, 1))
        return [
            (batch, start, min(start + per_block, self.positions))
            for batch in range(self.batches)
            for start in range(0, self.positions, per_block)
        ]

    def row_slice(self, block: tuple[int, int, int]) -> slice:
        """The rows of ``block`` in the flat row order."""
        batch, start, stop = block
        return slice(batch * self.positions + start, batch * self.positions + stop)

    def load(self, block: tuple[int, int, int], index: int = 0) -> Float64Array:
        """The block's rows as float64, copied into workspace buffer ``index``."""
        batch, start, stop = block
        rows = workspace(index, stop - start, self.classes)
        np.copyto(rows, self.view[batch, start:stop], casting="unsafe")
        return rows

    def rows_of(self, block: tuple[int, int, int]) -> np.ndarray[Any, Any]:
        """The block's rows as a view, in the input's own dtype."""
        batch, start, stop = block
        return self.view[batch, start:stop]


def for_each(work: Callable[[Item], None], items: Sequence[Item], size: int) -> None:
    """Run ``work`` on every item: on a thread pool for inputs of ``size`` elements or more, inline below."""
    threads = thread_count()
    if threads == 1 or size < PARALLEL_THRESHOLD or len(items) == 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(work, items):
            pass


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


#: Elements per piece of an elementwise loss: the unit of parallel work (fixed, so sums do not depend on threads).
PIECE_ELEMENTS = 1 << 20


def elementwise(
    kernel: Callable[..., Float64Array],
    operands: list[np.ndarray[Any, Any] | None],
    shape: tuple[int, ...],
    keep: bool,
) -> tuple[Float64Array | None, float]:
    """Evaluate ``kernel`` blockwise over operands broadcast to ``shape``, in float64.

    ``kernel`` receives 1-D float64 chunks (``None`` for an absent operand) and returns the chunk's values. Returns
    the full result (when ``keep``) and the sum of all values, accumulated per fixed piece of the leading axis, so
    that neither depends on the number of threads. Memory: one chunk of ``BLOCK_ELEMENTS`` per operand and thread.
    """
    output = np.empty(shape) if keep else None
    if len(shape) == 0:
        values = kernel(*(None if a is None else np.asarray(a, dtype=np.float64).reshape(1) for a in operands))
        if output is not None:
            output[...] = values[0]
        return output, float(values[0])
    per_piece = max(1, PIECE_ELEMENTS // max(1, int(np.prod(shape[1:], dtype=np.int64))))
    pieces = list(chunks(shape[0], per_piece))
    partials = np.zeros(len(pieces))
    present = [index for index, operand in enumerate(operands) if operand is not None]

    def work(index: int) -> None:
        piece = pieces[index]
        views = [np.broadcast_to(operands[i], shape)[piece] for i in present]  # type: ignore[arg-type]
        targets = [*views, output[piece]] if output is not None else views
        flags: list[Any] = ["readonly"] * len(views) + (["writeonly"] if output is not None else [])
        iterator = np.nditer(
            targets,
            flags=["external_loop", "buffered", "zerosize_ok", "grow_inner"],
            op_flags=[[flag] for flag in flags],
            op_dtypes=[np.float64] * len(targets),
            casting="unsafe",
            buffersize=BLOCK_ELEMENTS,
        )
        total = 0.0
        with iterator:
            for chunk in iterator:
                arguments: list[Float64Array | None] = [None] * len(operands)
                for position, i in enumerate(present):
                    arguments[i] = chunk[position]
                values = kernel(*arguments)
                if output is not None:
                    chunk[-1][...] = values
                total += float(np.sum(values))
        partials[index] = total

    for_each(work, range(len(pieces)), int(np.prod(shape, dtype=np.int64)))
    return output, float(np.sum(partials))
