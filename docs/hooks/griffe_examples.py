"""Griffe extension: two house habits of the docstrings, read as Google style.

A Google-style ``Example:`` section is rendered like ``Examples:``, and an ``Args:`` entry
that names several parameters over two lines is joined into one line.

The package's docstrings title their doctest sections ``Example:`` (singular), which griffe's
Google parser would otherwise render as a prose admonition, turning ``x[0]["key"]`` into
Markdown link syntax. Loaded by mkdocs.yml (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
#: An ``Args:`` entry naming several parameters over two lines ("a, b,\n    c: text").
_WRAPPED_NAMES = re.compile(r"^([ \t]+\w+(?:, \w+)*,)\n[ \t]+(\w+(?:, \w+)*:)", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _WRAPPED_NAMES.sub(r"\1 \2", value)
