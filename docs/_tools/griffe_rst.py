"""A griffe extension: the package's Sphinx-style maths, roles and attribute comments, as MkDocs renders them.

The docstrings are numpy style with reStructuredText maths (``.. math::`` blocks and ``:math:`` roles, which
``pytest --doctest-modules`` and ``help()`` show as written) and Sphinx roles (``:func:``, ``:mod:``, ...).
mkdocstrings renders docstrings as Markdown, so this rewrites them, before they are parsed, into the
``pymdownx.arithmatex`` syntax that the site renders with KaTeX, and the roles into inline code. Module attributes
documented with Sphinx's ``#:`` comments get those comments as their docstring (griffe reads only strings).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|obj|exc):`~?([^`]+)`")
INLINE_MATH = re.compile(r":math:`([^`]+)`")
MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = MATH_DIRECTIVE.match(lines[index])
        if not match:
            out.append(lines[index])
            index += 1
            continue
        # reST nests a directive in a list item with any indentation; Markdown needs 4 spaces per level.
        indent = " " * (4 * -(-len(match["indent"].expandtabs()) // 4))
        body = [match["first"]] if match["first"].strip() else []
        index += 1
        # The directive's content: the following lines indented deeper than the directive (blank lines included).
        while index < len(lines) and (not lines[index].strip() or _indent_of(lines[index]) > len(match["indent"])):
            body.append(lines[index].strip())
            index += 1
        while body and not body[-1]:
            body.pop()
        formula = " ".join(line for line in body if line)
        out.extend(["", f"{indent}$$", f"{indent}{formula}", f"{indent}$$", ""])
    return "\n".join(out)


ONE_LINE_DISPLAY = re.compile(r"^(?P<indent>[ \t]*)\$\$(?P<formula>.*)\$\$[ \t]*$")


def _display_continuations(text: str) -> str:
    """Fold lines indented under a one-line ``$$ ... $$`` into it (left over from converting ``.. math:: a`` with
    continuation lines): Markdown would print them as text after the formula."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = ONE_LINE_DISPLAY.match(lines[index])
        index += 1
        if not match:
            out.append(lines[index - 1])
            continue
        formula = [match["formula"].strip()]
        while index < len(lines) and lines[index].strip() and _indent_of(lines[index]) > len(match["indent"]):
            formula.append(lines[index].strip())
            index += 1
        out.append(f"{match['indent']}$$ {' '.join(formula)} $$")
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    """``text`` with reST maths as arithmatex maths and Sphinx roles as inline code."""
    text = _display_continuations(_math_blocks(text))
    text = INLINE_MATH.sub(lambda match: "\\(" + match[1] + "\\)", text)
    return ROLE.sub(lambda match: f"`{match[1]}`", text)


def _comment_docstring(obj: griffe.Object) -> griffe.Docstring | None:
    """The ``#:`` comment lines right above an attribute, as its docstring."""
    collection = obj.lines_collection
    lines = collection[obj.filepath] if isinstance(obj.filepath, Path) and obj.filepath in collection else None
    if not lines or not obj.lineno:
        return None
    comment: list[str] = []
    index = obj.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if not comment:
        return None
    return griffe.Docstring("\n".join(comment), lineno=index + 2, endlineno=obj.lineno - 1, parent=obj)


class SphinxMathToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded objects with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute:
            obj.docstring = _comment_docstring(obj)
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
