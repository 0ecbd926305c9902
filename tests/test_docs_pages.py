"""The site's pages run as tests: every ```` ```python exec="on" ```` block of ``docs/``, in page order, per session.

The site executes these blocks when it is built (markdown-exec, ``nox -s docs``); this runs the same code under
pytest, without building anything, so that a change to the package that breaks a page fails ``nox -s tests`` too.
Sybil finds the blocks; blocks of one markdown-exec ``session`` share a namespace, as they do in the build, and a
block without a session gets a fresh one. What a block prints is not compared (the build publishes it); a block that
raises, or warns (``filterwarnings = error``), fails its page.

The tests session has no matplotlib (it is a docs dependency). There, a stand-in records the plot calls and does
nothing, so that the computations around every plot still run; with matplotlib installed the real one draws.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

sybil = pytest.importorskip("sybil", reason="the docs pages need sybil (in the test dependency group)")
from sybil import Document, Example, Region  # noqa: E402
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOOLS = DOCS / "_tools"

EXEC_BLOCK = RawFencedCodeBlockLexer(
    info_pattern=re.compile(r'python[ \t]+(?P<options>[^\n]*\bexec="(?:on|true|1)"[^\n]*)$\n', re.MULTILINE),
)
SESSION = re.compile(r'\bsession="([^"]*)"')


def _evaluate(example: Example) -> None:
    """Run one block in its session's namespace, as markdown-exec does (its output is not compared)."""
    session = example.region.lexemes["session"]
    namespaces = example.document.namespace.setdefault("sessions", {})
    namespace = namespaces.setdefault(session, {"__name__": "__main__"}) if session else {"__name__": "__main__"}
    code = compile(example.parsed, f"{example.path}, line {example.line}", "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, namespace)


def exec_blocks(document: Document) -> Iterator[Region]:
    """Sybil parser: the markdown-exec Python blocks of a page."""
    for region in EXEC_BLOCK(document):
        match = SESSION.search(region.lexemes["options"])
        region.lexemes["session"] = match[1] if match else None
        region.parsed = region.lexemes["source"]
        region.evaluator = _evaluate
        yield region


PAGES = sorted(page for page in DOCS.rglob("*.md") if 'exec="on"' in page.read_text(encoding="utf-8"))


def _fake_matplotlib() -> dict[str, types.ModuleType]:
    """``matplotlib`` and ``matplotlib.pyplot`` stand-ins whose figures and axes accept any call."""
    pyplot = types.ModuleType("matplotlib.pyplot")

    def subplots(nrows: int = 1, ncols: int = 1, **options: Any) -> tuple[Any, Any]:
        axes = tuple(mock.MagicMock(name="Axes") for _ in range(nrows * ncols))
        return mock.MagicMock(name="Figure"), axes[0] if len(axes) == 1 else axes

    pyplot.subplots = subplots  # type: ignore[attr-defined]
    pyplot.rcParams = {}  # type: ignore[attr-defined]
    pyplot.__getattr__ = lambda name: mock.MagicMock(name=f"pyplot.{name}")  # type: ignore[method-assign]
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.use = lambda *arguments, **options: None  # type: ignore[attr-defined]
    matplotlib.pyplot = pyplot  # type: ignore[attr-defined]
    return {"matplotlib": matplotlib, "matplotlib.pyplot": pyplot}


@pytest.fixture
def site_helpers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The helpers the blocks import (``xe_docs``), as the build's hook provides them; matplotlib or its stand-in."""
    import torch

    monkeypatch.syspath_prepend(str(TOOLS))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        for name, module in _fake_matplotlib().items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.delitem(sys.modules, "xe_docs", raising=False)
        import xe_docs

        monkeypatch.setattr(xe_docs, "svg", lambda fig, alt: "<figure></figure>")
    # The build runs torch with one thread (docs/_tools/hooks.py): the pages' tensors are tiny, and a thread pool on
    # a busy machine makes them 100 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("site_helpers")
@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(DOCS).as_posix() for page in PAGES])
def test_page_runs(page: Path) -> None:
    """Every executed block of the page runs, in order, without an error or a warning."""
    examples = list(Document.parse(str(page), exec_blocks))
    assert examples, f"{page} has exec blocks that the parser did not find"
    for example in examples:
        example.evaluate()
