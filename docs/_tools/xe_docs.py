"""Helpers for the site's executed code blocks: reproducible SVG plots, Markdown tables, errors shown as text.

The blocks import this module (``from xe_docs import svg, table``); ``hooks.py`` puts its folder on ``sys.path``,
and so does the test that runs the pages (``tests/test_docs_pages.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

# Byte-identical SVGs on every build: matplotlib hashes this salt into its element ids (a random salt otherwise), and
# `svg` drops the creation date from the metadata.
plt.rcParams.update(
    {
        "svg.hashsalt": "xe_verify",
        "svg.fonttype": "path",
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
    }
)

#: The repository root (pages that read the test suite find it here).
ROOT = Path(__file__).resolve().parents[2]

#: Line styles used on every page: the reference solid, torch dashed on top of it.
REFERENCE = {"color": "C0", "linewidth": 2.5, "label": "xe_verify (numpy, float64)"}
TORCH = {"color": "C1", "linewidth": 1.5, "linestyle": "--", "label": "torch"}


def svg(fig: Any, alt: str) -> str:
    """The figure as an inline ``<svg>`` (no XML prolog) in a ``<figure>``, with ``alt`` as its accessible name.

    Closes the figure. Print the result from a block with ``html="true"``.
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    image = text[text.index("<svg") :]
    image = image.replace("<svg ", f'<svg role="img" aria-label="{_escape(alt)}" ', 1)
    return f'<figure class="xe-plot">\n{image}\n</figure>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column (``l`` or ``r``, default: right for numbers)."""
    rows = [[_cell(value) for value in row] for row in rows]
    if align is None:
        align = "".join("r" if rows and _numeric(rows[0][i]) else "l" for i in range(len(header)))
    rule = ["---:" if letter == "r" else "---" for letter in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", r"\|").replace("\n", " ")


def _numeric(text: str) -> bool:
    try:
        float(text.strip("`"))
    except ValueError:
        return False
    return True


def error_of(call: Callable[[], Any]) -> str:
    """``"TypeName: message"`` of the exception that ``call()`` raises (an AssertionError if it raises none)."""
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    raise AssertionError("expected an exception")
