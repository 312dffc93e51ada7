r"""Griffe extension for the API reference: the reST markup inside evoexp's Google-style docstrings, as Markdown.

evoexp's docstrings are Google style with Sphinx roles and directives (what ``help()`` and Sphinx read). mkdocstrings
renders docstrings as Markdown, where that markup would show literally, so before a docstring is parsed this
extension rewrites

* ``:math:`x``` into ``\(x\)`` and a ``.. math::`` directive into a ``$$ ... $$`` block (MathJax, through
  ``pymdownx.arithmatex``); a block with alignment (``&`` or ``\\``) is wrapped in ``aligned``;
* ``:class:`~pkg.mod.Name``` (and ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``, ...) into the code span
  ``Name`` (the full path without ``~``);
* a reST simple table (two columns between ``====  ====`` borders) into a bullet list;
* a paragraph ending in ``::`` (a literal block follows) into one ending in ``:``.

Used by ``mkdocs.yml`` (``extensions`` of the Python handler); it changes the rendered pages only, never the code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(math|class|func|meth|mod|attr|data|exc|obj|const|ref|doc):`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$")


def _role(match: re.Match[str]) -> str:
    role, text = match.group(1), match.group(2)
    if role == "math":
        return "\\(" + " ".join(text.split()) + "\\)"
    explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", text, re.S)
    if explicit:
        return f"`{explicit.group(1)}`"
    target = text.lstrip(".")
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _math_block(indent: str, lines: list[str]) -> list[str]:
    if indent:  # inside a bullet: Markdown continues a list item after a blank line only at 4 spaces
        indent = indent.ljust(4)
    body = [line.strip() for line in lines if line.strip()]
    if any("&" in line or line.endswith("\\\\") for line in body):
        body = ["\\begin{aligned}", *body, "\\end{aligned}"]
    return ["", f"{indent}$$", *(f"{indent}{line}" for line in body), f"{indent}$$", ""]


def _directives(lines: list[str]) -> list[str]:
    """Replace every ``.. math::`` directive (first line and indented continuation) with a ``$$`` block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, content = match.group(1), [match.group(2)]
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            content.append(lines[i])
            i += 1
        out.extend(_math_block(indent, content))
    return out


def _tables(lines: list[str]) -> list[str]:
    """Turn reST simple tables (border, rows, border) into bullet lists ``- first column: rest``."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        split = lines[i].index(" ", len(lines[i]) - len(lines[i].lstrip()))
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        i += 1
        items: list[tuple[str, str]] = []
        while i < len(lines) and not _TABLE_BORDER.match(lines[i]):
            first, rest = lines[i][:split].strip(), lines[i][split:].strip()
            if first or not items:
                items.append((first, rest))
            else:
                items[-1] = (items[-1][0], f"{items[-1][1]} {rest}")
            i += 1
        i += 1  # the closing border
        out.extend(["", *(f"{indent}- {first}: {rest}" for first, rest in items), ""])
    return out


def rst_to_markdown(text: str) -> str:
    """The Markdown rendering of a docstring written with reST roles, math directives and simple tables."""
    lines = _tables(_directives(text.splitlines()))
    lines = [_LITERAL_MARKER.sub(":", line) for line in lines]
    return _ROLE.sub(_role, "\n".join(lines))


class RstMarkup(griffe.Extension):
    """Rewrite each object's docstring with :func:`rst_to_markdown` once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place (before mkdocstrings parses it)."""
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
