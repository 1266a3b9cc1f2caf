"""Griffe extension: two house habits of the docstrings, read as Google style.

A Google-style ``Example:`` section is rendered like ``Examples:``, and an ``Args:`` entry
that names several parameters over two lines is joined into one line.

The package's docstrings title their doctest sections ``Example:`` (singular), which griffe's
Google parser would otherwise render as a prose admonition, turning ``x[0]["key"]`` into
Markdown link syntax. Loaded by mkdocs.yml (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import importlib
import inspect
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


class FactoryBuilders(griffe.Extension):
    """The model builders made by a factory (``SEResNet50 = _builder(...)``) become functions.

    Static analysis sees them as attributes without a docstring; their signature and
    docstring exist at run time only, so they are read from the imported function.
    """

    def on_module_members(self, *, mod, **kwargs):
        for name, member in list(mod.members.items()):
            if (
                member.is_alias
                or not member.is_attribute
                or not str(member.value).startswith("_builder(")
            ):
                continue
            runtime = getattr(importlib.import_module(mod.path), name, None)
            if not callable(runtime):
                continue
            parameters = griffe.Parameters(
                *(
                    griffe.Parameter(
                        p.name,
                        kind=griffe.ParameterKind(p.kind.description),
                        default=None if p.default is inspect.Parameter.empty else repr(p.default),
                    )
                    for p in inspect.signature(runtime).parameters.values()
                )
            )
            function = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=parameters,
                docstring=griffe.Docstring(
                    inspect.cleandoc(runtime.__doc__ or ""), lineno=member.lineno
                ),
            )
            mod.set_member(name, function)
