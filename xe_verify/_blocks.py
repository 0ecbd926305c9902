"""Row blocks: bounded memory and all the cores, with results that do not depend on the thread count.

Every softmax-based loss works on *rows* of classes. A :class:`RowLayout` presents an input of shape ``(C,)``,
``(N, C)`` or ``(N, C, d1, ..., dk)`` as a 3-D view ``(B, S, C)`` (row ``r = b * S + s``, in the order of the
target's flattened positions) without copying it, and cuts it into blocks of at most ``BLOCK_ELEMENTS`` elements.
Each block is converted to float64 into a per-thread workspace and reduced to per-row results, which are written to
their own slice of an output; reductions over rows happen afterwards, on the whole per-row vector. Block boundaries
depend only on the shape, and no row's arithmetic depends on its neighbours, so the results are bit-for-bit the
same whatever the number of threads (numpy releases the GIL inside its loops, so the threads really run in parallel).

Memory: each thread holds at most ``WORKSPACE_BUFFERS`` float64 buffers of one block, 1 MiB each: a few MiB in
all, whatever the input size. A row of more than ``BLOCK_ELEMENTS`` classes is one block on its own.

Elementwise losses (:func:`elementwise`) are cut instead into fixed pieces of ``PIECE_ELEMENTS`` consecutive
elements, the unit of parallel work, which the kernels see in chunks of at most ``CHUNK_ELEMENTS``.

The constants were measured on the project's 2-core machines (AMD EPYC Zen 4, 1 MiB L2 per core; see issue 6 and
``python -m benchmarks``). Changing one can change a mean in its last bits (its partial sums are taken per piece
and chunk); the number of threads never does.
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

#: Elements per row block: 128 Ki float64 values are 1 MiB. Smaller blocks fit the core's cache better but pay
#: Python's per-block overhead, and the GIL, more often (a 32000-class row is 250 KiB already): of 2^15..2^19, 2^17
#: was the fastest on one thread and on two, and with 2^16 two threads were no faster than one.
BLOCK_ELEMENTS = 1 << 17

#: Workspace buffers a kernel may use per thread (the block, four temporaries, a second operand, an output block
#: where the output's layout has no 2-D view of the block's rows).
WORKSPACE_BUFFERS = 7

#: Below this many elements a call runs on the calling thread. A pool costs about a millisecond to start (threads,
#: their workspaces) and the GIL costs a share of every block, so on an idle 2-core machine 2 threads were no faster
#: than one up to about 4 * 10^6 elements, and 1.1-1.5x faster from 10^7 on.
PARALLEL_THRESHOLD = 1 << 22


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


def release_workspace() -> None:
    """Free the calling thread's workspace buffers (the next call allocates them again; memory measurements use it)."""
    _local.__dict__.pop("buffers", None)


#: A block of rows: batches ``b0:b1`` and, in each, positions ``s0:s1``. Either one batch's run of positions, or
#: several whole batches (when one batch has fewer rows than a block holds), so the rows are consecutive in row order.
Block = tuple[int, int, int, int]


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

    def blocks(self, columns: int | None = None) -> list[Block]:
        """Blocks covering every row once, in row order, of at most ``BLOCK_ELEMENTS`` elements (or one row).

        ``columns``: the elements of a row that the work reads (default: all ``C``), which sets the rows per block.
        Batches with few positions, such as ``(N, C, 1)``, go several to a block: a block per batch would cost
        Python's per-block overhead once per sample.
        """
        if self.rows == 0:
            return []
        per_block = max(1, BLOCK_ELEMENTS // max(self.classes if columns is None else columns, 1))
        if self.positions >= per_block or self.batches == 1:
            return [
                (batch, batch + 1, start, min(start + per_block, self.positions))
                for batch in range(self.batches)
                for start in range(0, self.positions, per_block)
            ]
        per_block_batches = per_block // self.positions
        return [
            (start, min(start + per_block_batches, self.batches), 0, self.positions)
            for start in range(0, self.batches, per_block_batches)
        ]

    def row_slice(self, block: Block) -> slice:
        """The rows of ``block`` in the flat row order."""
        first_batch, stop_batch, start, stop = block
        return slice(first_batch * self.positions + start, (stop_batch - 1) * self.positions + stop)

    def _block_view(self, block: Block) -> np.ndarray[Any, Any]:
        first_batch, stop_batch, start, stop = block
        return self.view[first_batch:stop_batch, start:stop]

    def load(self, block: Block, index: int = 0) -> Float64Array:
        """The block's rows as float64, copied into workspace buffer ``index``."""
        source = self._block_view(block)
        rows = workspace(index, source.shape[0] * source.shape[1], self.classes)
        np.copyto(rows.reshape(source.shape), source, casting="unsafe")
        return rows

    def rows_view(self, block: Block) -> np.ndarray[Any, Any] | None:
        """The block's rows as a 2-D view into the array (to write to), or ``None`` where the layout allows none."""
        source = self._block_view(block)
        if source.shape[0] == 1 or source.strides[0] == source.shape[1] * source.strides[1]:
            return source.reshape(-1, self.classes)
        return None

    def store(self, block: Block, rows: np.ndarray[Any, Any]) -> None:
        """Write the block's rows, shape ``(rows, C)``, into the array."""
        target = self._block_view(block)
        np.copyto(target, rows.reshape(target.shape))

    def gather(self, block: Block, columns: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]:
        """One element per row of the block, at the class ``columns[row]``, in the array's own dtype."""
        source = self._block_view(block)
        picked = np.take_along_axis(source, columns.reshape(*source.shape[:2], 1), axis=-1)
        return picked.reshape(-1)


#: Tasks per thread that ``for_each`` hands to the pool: consecutive items go together, so that a task is not one
#: small block (a task costs tens of microseconds of Python), yet a thread that falls behind is caught up by the others.
TASKS_PER_THREAD = 8


def for_each(work: Callable[[Item], None], items: Sequence[Item], size: int, *, off_main_thread: bool = False) -> None:
    """Run ``work`` on every item: on a thread pool for inputs of ``size`` elements or more, inline below.

    ``off_main_thread``: above the threshold, use a pool even for one thread (see ``CHUNK_ELEMENTS``).
    """
    threads = thread_count()
    if size < PARALLEL_THRESHOLD or len(items) == 1 or (threads == 1 and not off_main_thread):
        for item in items:
            work(item)
        return
    per_task = max(1, len(items) // (threads * TASKS_PER_THREAD))

    def run(task: slice) -> None:
        for item in items[task]:
            work(item)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(run, chunks(len(items), per_task)):
            pass


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


#: Elements per piece of an elementwise loss: the unit of parallel work (fixed, so sums do not depend on threads).
#: Small enough that an input just above ``PARALLEL_THRESHOLD`` still splits into pieces for every thread.
PIECE_ELEMENTS = 1 << 18

#: Elements per chunk handed to an elementwise kernel, for inputs of ``PARALLEL_THRESHOLD`` elements or more (below,
#: ``SMALL_CHUNK_ELEMENTS``). The chunk size depends on the input's size only, so every element is computed in the
#: same position of the same chunk whatever the number of threads.
#:
#: Large chunks are what lets threads help: each numpy call of a kernel must take the GIL back, and on 2^13-element
#: chunks the threads spent their time handing it over (2 threads were 1.4-1.7x *slower* than one on an idle 2-core
#: machine; on 2^16-element chunks 1.3-1.6x faster). But a kernel makes about ten temporaries of a chunk's size, and
#: on the main thread glibc trims its main heap after every chunk of 2^14 or more elements and page-faults it back in
#: on the next (51,000 faults per 10^7 elements, binary_cross_entropy twice as slow); worker threads' heaps are not
#: trimmed like that. Hence large chunks run on worker threads only (a pool of one when ``XE_VERIFY_THREADS=1``),
#: and the main thread gets small ones, which stay in malloc's heap.
CHUNK_ELEMENTS = 1 << 16

#: Elements per chunk for inputs below ``PARALLEL_THRESHOLD``, which run on the calling thread (see above).
SMALL_CHUNK_ELEMENTS = 1 << 13


def elementwise(
    kernel: Callable[..., Float64Array],
    operands: list[np.ndarray[Any, Any] | None],
    shape: tuple[int, ...],
    keep: bool,
) -> tuple[Float64Array | None, float]:
    """Evaluate ``kernel`` blockwise over operands broadcast to ``shape``, in float64.

    ``kernel`` receives 1-D float64 chunks (``None`` for an absent operand) and returns the chunk's values. Returns
    the full result (when ``keep``) and the sum of all values, accumulated per fixed piece of ``PIECE_ELEMENTS``
    consecutive elements, so that neither depends on the number of threads. Memory: one chunk of at most
    ``CHUNK_ELEMENTS`` per operand and thread, and the kernel's temporaries of that size, whatever the shape.
    """
    output = np.empty(shape) if keep else None
    if len(shape) == 0:
        values = kernel(*(None if a is None else np.asarray(a, dtype=np.float64).reshape(1) for a in operands))
        if output is not None:
            output[...] = values[0]
        return output, float(values[0])
    total_size = int(np.prod(shape, dtype=np.int64))
    # Pieces are ranges of the iteration order, not of the leading axis: a shape like (2, 10**9) still splits into
    # pieces of PIECE_ELEMENTS, and no chunk grows past CHUNK_ELEMENTS (nditer's grow_inner would hand the kernel a
    # whole contiguous float64 row, and the kernel makes several temporaries of a chunk's size).
    pieces = list(chunks(total_size, PIECE_ELEMENTS))
    partials = np.zeros(len(pieces))
    present = [index for index, operand in enumerate(operands) if operand is not None]
    views = [np.broadcast_to(operands[i], shape) for i in present]  # type: ignore[arg-type]
    targets = [*views, output] if output is not None else views
    flags: list[Any] = ["readonly"] * len(views) + (["writeonly"] if output is not None else [])
    chunk_elements = CHUNK_ELEMENTS if total_size >= PARALLEL_THRESHOLD else SMALL_CHUNK_ELEMENTS

    def work(index: int) -> None:
        iterator = np.nditer(
            targets,
            flags=["external_loop", "buffered", "ranged", "zerosize_ok"],
            op_flags=[[flag] for flag in flags],
            op_dtypes=[np.float64] * len(targets),
            casting="unsafe",
            buffersize=chunk_elements,
        )
        # Settable at run time (numpy's own tests set it); numpy's stubs declare it read-only.
        iterator.iterrange = (pieces[index].start, pieces[index].stop)  # type: ignore[misc]
        total = 0.0
        with iterator:
            for chunk in iterator:
                arguments: list[Float64Array | None] = [None] * len(operands)
                for position, i in enumerate(present):
                    arguments[i] = chunk[position]
                values = kernel(*arguments)
                if output is not None:
                    chunk[-1][...] = values
                # An overflowing sum is inf, and inf + -inf is NaN, silently: torch does not warn either.
                with np.errstate(over="ignore", invalid="ignore"):
                    total += float(np.sum(values))
        partials[index] = total

    for_each(work, range(len(pieces)), total_size, off_main_thread=True)
    with np.errstate(over="ignore", invalid="ignore"):
        return output, float(np.sum(partials))
