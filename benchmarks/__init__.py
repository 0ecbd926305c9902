"""Benchmarks: the reference against torch, side by side in one process, on the same input and thread count.

``python -m benchmarks`` (what ``nox -s bench`` runs) measures every loss at LLM sizes and two size sweeps up to
10^9 elements (a few minutes on 2 cores, about 16 GiB of memory at its largest point), prints a table, judges issue
6's targets and writes everything as JSON to ``build/bench.json`` (``--json PATH`` to change it; ``build/`` is not
committed). ``--quick`` measures small sizes in a few seconds; ``benchmarks.run(quick=True)`` returns the same records
to Python, for the docs' Performance page. ``python -m benchmarks --help`` lists the options.

Each record (a dict) has:

``function``, ``variant``, ``shape``, ``elements``, ``dtype``, ``reduction``
    What was called: ``xe_verify.functional.<function>`` and ``torch.nn.functional.<function>``, the same call.
``family``
    The size sweep the record belongs to (``None`` for the others).
``threads``
    The reference's thread count, which torch was given too (``torch.set_num_threads``).
``ref_s``, ``torch_s``, ``ratio``, ``ref_times``, ``torch_times``
    Best-of-k wall seconds (``time.perf_counter``), their ratio, and every timing.
``ref_ns_per_element``, ``torch_ns_per_element``
    Best time divided by the number of input elements.
``ref_cpu_s``, ``ref_cpu_ns_per_element``
    The reference's best CPU time (all its threads), in all and per element: its work, whatever the thread count.
``ref_peak_mib``, ``ref_output_mib``
    The reference's peak temporary memory above its inputs (tracemalloc, worker threads included, the result
    excluded), and the size of its result.
``ref_rss_peak_mib``, ``torch_rss_peak_mib``, ``input_mib``
    Resident-set high-water marks above the start of a call (a cross-check, and torch's only figure), and the inputs.
``rel_error``, ``torch_rel_error``
    Relative error of the reference's result, and of torch's own float32 result, against torch in float64.
``note``
    Why something was not measured, else ``None``.

``benchmarks/_measure.py`` says how each figure is measured.
"""

from benchmarks._run import environment, run, targets

__all__ = ["DEFAULT_JSON", "environment", "run", "targets"]

#: Where ``python -m benchmarks`` writes its JSON unless told otherwise (``build/`` is ignored by git).
DEFAULT_JSON = "build/bench.json"
