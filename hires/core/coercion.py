"""The one coercion of user values (CLI strings, TOML values, API objects) to a type: booleans only
from real booleans, finite numbers, tuples from lists or commas, optional values, choices and
limits; errors are one line naming the flag or key, the value and what is allowed.  ``hires.core.config``
applies it to every Settings field, ``hires.rendering.request`` to run options.
"""
from __future__ import annotations

import math
import os
import typing

from hires.core.errors import OptionError


def _convert(kind, value):
    """``value`` as ``kind`` (bool, int, float, str, str | None or tuple[...]); ValueError if it is not."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)) and not isinstance(items, bool):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise ValueError
        return tuple(_convert(args[0], v.strip() if isinstance(v, str) else v)
                     for v in items if not (isinstance(v, str) and not v.strip()))
    if args and type(None) in args:  # optional: None stays None
        return None if value is None else _convert(next(a for a in args if a is not type(None)), value)
    if kind is bool:  # only a real boolean: bool("false") is True, and a job file meant false
        if isinstance(value, bool):
            return value
        raise ValueError
    if isinstance(value, bool):  # True is an int to Python, never a number to a user
        raise ValueError
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError
    if kind is float:  # a finite one: inf, nan and 1e400 (inf) would reach the losses
        try:
            number = float(value.strip() if isinstance(value, str) else value) \
                if isinstance(value, (int, float, str)) else None
        except OverflowError:  # an int too large for a float
            raise ValueError from None
        if number is None or not math.isfinite(number):
            raise ValueError
        return number
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, (int, float)):  # e.g. memory = 4000000000 in a TOML file
        return str(value)
    raise ValueError


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _describe(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0]).replace('a ', '', 1)}s"
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return _KIND_WORDS.get(args[0] if args else kind, str(kind))


def coerce_flag(value, label: str) -> bool:
    """A yes/no option from the CLI, TOML or the API: a real boolean only."""
    if isinstance(value, bool):
        return value
    raise OptionError(f"{label}: {value!r} is not true or false (in TOML: {label.rsplit(' ', 1)[-1]} = true, "
                      "without quotes)")


def coerce_value(kind, value, label: str, choices=None, check=None):
    """``value`` as type ``kind`` (see ``_convert``), one of ``choices`` if given, passing
    ``check`` = (test, what a good value looks like) if given: the one coercion of user values,
    for Settings fields and run options alike."""
    allowed = f"one of {', '.join(map(str, choices))}" if choices else _describe(kind)
    try:
        converted = _convert(kind, value)
    except (TypeError, ValueError):
        raise OptionError(f"{label}: {value!r} is not {allowed}") from None
    if choices and converted not in choices:
        raise OptionError(f"{label}: {value!r} is not {allowed}")
    if check is not None and converted is not None:
        try:
            ok = check[0](converted)
        except OptionError:
            ok = False
        if not ok:
            raise OptionError(f"{label}: {value!r} must be {check[1]}")
    return converted


def scheduler_spec(value, label: str = "--scheduler"):
    """A Dask scheduler as the user may give it: ``local:N`` (N >= 1 workers here), an address with
    a scheme (``tcp://host:8786``), or an API user's own ``distributed.Client`` (anything with
    ``submit``), checked before any work; None stays None."""
    if value is None or (not isinstance(value, str) and hasattr(value, "submit")):
        return value
    if isinstance(value, str) and value.startswith("local:"):
        n = value.split(":", 1)[1]
        if n.isdigit() and int(n) >= 1:
            return value
        raise OptionError(f"{label}: {value!r}: give local:N with N >= 1 workers, or tcp://HOST:PORT")
    if isinstance(value, str) and "://" in value.strip("/:") and value.split("://", 1)[1]:
        return value
    raise OptionError(f"{label}: {value!r} is neither local:N nor a scheduler address such as tcp://host:8786")
