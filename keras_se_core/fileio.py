"""Atomic file writes: write beside the target, then ``os.replace`` (one owner of the pattern).

A reader (or a resumed run after a crash) sees either the old file or the new one,
never a half-written file.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "summary.json")
    >>> write_json(path, {"epochs": 3})
    >>> open(path).read()
    '{\\n  "epochs": 3\\n}'
"""

from __future__ import annotations

import contextlib
import json
import os


def temporary_path(path):
    """The sibling temporary name used while ``path`` is written (same directory, same suffix)."""
    head, tail = os.path.split(os.fspath(path))
    stem, dot, suffix = tail.partition(".")
    return os.path.join(head, f".{stem}.tmp{os.getpid()}{dot}{suffix}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to ``path`` only when the block succeeds.

    For writers that take a path (``model.save``, NumPy, PIL). On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """``open()`` for writing whose result appears at ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_json(path, obj, *, indent=2, allow_nan=True):
    """Writes ``obj`` as JSON atomically (non-JSON values through ``str``)."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, default=str, allow_nan=allow_nan)


def write_text(path, text):
    """Writes ``text`` atomically."""
    with atomic_open(path) as f:
        f.write(text)
