"""Argument checks, one function per kind, with Keras's wording.

Every check raises a `keras_se_core.errors.UsageError` (a `ValueError`) of the form
``"`name` must be <what>. Received: name=<value!r>"``, and returns the value
(converted where that is the point, e.g. ``int``). ``bool`` is never accepted as a
number, and numbers must be finite unless said otherwise (``float("inf")`` would
otherwise be saved as ``Infinity``, which is not JSON).

Example:
    >>> check_positive_int("epochs", 3)
    3
    >>> check_positive_int("epochs", 0)
    Traceback (most recent call last):
    ...
    keras_se_core.errors.UsageError: `epochs` must be a positive integer. Received: epochs=0
"""

from __future__ import annotations

import math
import numbers

from keras_se_core.errors import UsageError

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_positive_int",
    "check_number",
    "check_positive_number",
    "check_optional",
    "is_number",
]


def _fail(name, what, value):
    raise UsageError(f"`{name}` must be {what}. Received: {name}={value!r}")


def is_number(value):
    """A real number that is not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_bool(name, value):
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        _fail(name, "True or False", value)
    return value


def check_choice(name, value, choices):
    """One of ``choices`` (a tuple; ``None`` is allowed only if listed)."""
    if value not in choices:
        _fail(name, f"one of {tuple(choices)}", value)
    return value


def check_int(name, value, *, minimum=None, maximum=None, what=None):
    """An integer (not a bool) in ``[minimum, maximum]``; returned as ``int``."""
    bounds_ok = (minimum is None or (is_number(value) and value >= minimum)) and (
        maximum is None or (is_number(value) and value <= maximum)
    )
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not bounds_ok:
        if what is None:
            what = "an integer"
            if minimum == 0 and maximum is None:
                what = "a non-negative integer"
            elif minimum is not None and maximum is None:
                what = f"an integer >= {minimum}"
            elif minimum is not None:
                what = f"an integer in [{minimum}, {maximum}]"
        _fail(name, what, value)
    return int(value)


def check_positive_int(name, value):
    """An integer >= 1."""
    return check_int(name, value, minimum=1, what="a positive integer")


def check_number(name, value, *, minimum=None, maximum=None, inclusive=(True, True), what=None):
    """A finite real number in the given range; ``inclusive`` = (lower, upper) closedness."""
    ok = is_number(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum if inclusive[0] else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if inclusive[1] else value < maximum
    if not ok:
        if what is None:
            low = "" if minimum is None else ("[" if inclusive[0] else "(") + f"{minimum}, "
            high = "" if maximum is None else f"{maximum}" + ("]" if inclusive[1] else ")")
            if minimum is not None and maximum is not None:
                what = f"a finite number in {low}{high}"
            elif minimum is not None:
                what = f"a finite number {'>=' if inclusive[0] else '>'} {minimum}"
            elif maximum is not None:
                what = f"a finite number {'<=' if inclusive[1] else '<'} {maximum}"
            else:
                what = "a finite number"
        _fail(name, what, value)
    return value


def check_positive_number(name, value):
    """A finite number > 0."""
    return check_number(
        name, value, minimum=0, inclusive=(False, True), what="a positive finite number"
    )


def check_optional(check, name, value, *args, **kwargs):
    """``None``, or what ``check(name, value, ...)`` accepts."""
    return None if value is None else check(name, value, *args, **kwargs)
