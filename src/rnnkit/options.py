"""Options declared once, on the dataclass fields that hold them.

A config dataclass (``TrainConfig``, a model's config, a task's data config)
declares each option with :func:`opt`: its default, help text, bounds or
choices, the flag it is given by, and whether the data determines it
(vocabulary sizes, tag counts).  Everything else reads that declaration:

* the CLI builds its flags from it (``rnnkit.cli``),
* a YAML ``--config`` file's keys are the flags' names, checked by :func:`coerce`,
* :func:`validate` checks every field of an instance (called from ``__post_init__``,
  so no bad config can be built, from the CLI or the API),
* the server builds its request schemas from it (``rnnkit.serve``),
* ``config.json`` is the dataclasses as dicts.

This module imports only the standard library and ``rnnkit.errors``, so every
layer (models included) may use it.  Why field metadata and not pydantic or
jsonargparse: the configs already were dataclasses with a comment per field; the
metadata turns those comments into checked declarations without a new
dependency in ``import rnnkit`` or a second class per config.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from rnnkit.errors import ConfigError

KEY = "rnnkit"  # the dataclass field metadata key


@dataclass(frozen=True)
class Spec:
    """How one option is given and what it may be (see :func:`opt`)."""

    help: str = ""
    flag: Optional[str] = None            # CLI flag without dashes; None: the field name with - for _
    choices: Optional[Sequence[Any]] = None
    ge: Optional[float] = None            # bounds: value >= ge, > gt, <= le, < lt
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    derived: bool = False                 # set from the data, never by the user (vocab sizes, ids)
    parse: Optional[Callable[[str], Any]] = None  # CLI text -> value where the type alone cannot say
    zero_is_none: bool = False            # the flag's 0 means None ("off"): --clip-norm 0, --embedding-size 0
    cli: bool = True                      # False: an API-only field (no flag, no YAML key)
    metavar: Optional[str] = None


def opt(default: Any = MISSING, *, help: str = "", default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with its option declaration (``help``, ``choices``, ``ge``/``gt``/``le``/``lt``,
    ``flag``, ``derived``, ``parse``, ``zero_is_none``, ``cli``, ``metavar``)."""
    return field(default=default, default_factory=default_factory, metadata={KEY: Spec(help=help, **spec)})


@dataclass(frozen=True)
class Option:
    """One declared field of a config dataclass, its type resolved."""

    name: str
    type: Any        # int, float, bool, str, or Any (a column: int or str)
    optional: bool   # None is allowed
    default: Any     # MISSING for required (derived) fields
    spec: Spec

    @property
    def flag(self) -> str:
        return "--" + (self.spec.flag or self.name.replace("_", "-"))

    @property
    def key(self) -> str:
        """The name in YAML files and argparse namespaces: the flag with _ for -."""
        return (self.spec.flag or self.name).replace("-", "_")

    @property
    def user_facing(self) -> bool:
        return self.spec.cli and not self.spec.derived

    def allowed(self) -> str:
        """What this option accepts, in words."""
        s = self.spec
        if s.choices is not None:
            return "one of " + ", ".join(str(c) for c in s.choices)
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(self.type, "a value")
        bounds = [f"{op} {_num(v)}" for op, v in ((">=", s.ge), (">", s.gt), ("<=", s.le), ("<", s.lt))
                  if v is not None]
        text = kind + (" " + " and ".join(bounds) if bounds else "")
        if s.zero_is_none:
            text += " (0: off)"
        elif self.optional and self.type is not bool:
            text += " (or none)"
        return text


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _resolve(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        return (args[0] if len(args) == 1 else Any), optional
    return tp, False


_HINTS: dict[type, dict[str, Any]] = {}


def options(cls: type) -> list[Option]:
    """The declared fields of dataclass ``cls`` (fields without :func:`opt` get an empty spec)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    hints = _HINTS[cls]
    out = []
    for f in dataclasses.fields(cls):
        tp, optional = _resolve(hints[f.name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        out.append(Option(f.name, tp, optional or default is None, default, f.metadata.get(KEY, Spec())))
    return out


def user_options(cls: type) -> Iterator[Option]:
    """The options a user gives (flags and YAML keys): declared, not derived, not API-only."""
    return (o for o in options(cls) if o.user_facing)


def _fail(o: Option, value: Any, source: str) -> ConfigError:
    where = o.flag if source == "flag" else (f"{source}: {o.key}" if source else o.name)
    return ConfigError(f"{where}: {value!r} is not allowed; expected {o.allowed()}")


def coerce(o: Option, value: Any, source: str = "flag") -> Any:
    """``value`` (CLI text, a YAML value or a Python value) as the option's type, checked against its
    declaration; ``ConfigError`` naming the option (by ``source``: its flag, or ``FILE: key``) otherwise."""
    s = o.spec
    if value is None:
        if o.optional or o.type is Any:
            return None
        raise _fail(o, value, source)
    if isinstance(value, str) and s.parse is not None:
        try:
            value = s.parse(value)
        except (ValueError, TypeError):
            raise _fail(o, value, source) from None
    elif o.type is bool:
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            value = value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise _fail(o, value, source)
    elif o.type in (int, float):
        if isinstance(value, str):
            try:
                value = o.type(value.strip())
            except ValueError:
                raise _fail(o, value, source) from None
        allowed = (int,) if o.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
            raise _fail(o, value, source)
        value = o.type(value)
    elif o.type is str:
        if not isinstance(value, str):
            raise _fail(o, value, source)
    if s.zero_is_none and value == 0:
        return None
    if s.choices is not None and value not in s.choices:
        raise _fail(o, value, source)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if ((s.ge is not None and value < s.ge) or (s.gt is not None and value <= s.gt)
                or (s.le is not None and value > s.le) or (s.lt is not None and value >= s.lt)):
            raise _fail(o, value, source)
    return value


def validate(instance: Any) -> None:
    """Check every declared field of a config dataclass instance (bounds, choices, types), then its
    ``check()`` method for rules between fields.  ``ConfigError`` names the first bad field."""
    for o in options(type(instance)):
        value = getattr(instance, o.name)
        if o.spec.zero_is_none and value is None:
            continue
        checked = coerce(o, value, source="")
        if checked != value or type(checked) is not type(value):
            object.__setattr__(instance, o.name, checked)  # e.g. an int given for a float field
    check = getattr(instance, "check", None)
    if check is not None:
        check()


def find(cls: type, name: str) -> Option:
    """The declared option ``name`` (field name) of ``cls``."""
    for o in options(cls):
        if o.name == name:
            return o
    raise KeyError(name)


def flag_of(cls: type, name: str) -> str:
    """How the user names field ``name`` of ``cls`` (its flag), for messages about rules between fields."""
    return find(cls, name).flag


def column(value: str) -> Union[int, str]:
    """A column given by 0-based index or by name."""
    return int(value) if value.isdigit() else value


def encoding(value: str) -> str:
    """A text encoding Python knows (``utf-8``, ``latin-1``, ...)."""
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(value) from None
    return value


def regex(value: str) -> str:
    """A regular expression that compiles."""
    import re

    try:
        re.compile(value)
    except re.error:
        raise ValueError(value) from None
    return value


def fractions(value: str) -> str:
    """Three comma-separated fractions that sum to 1 (train, validation, test), e.g. ``0.9,0.05,0.05``."""
    parts = [float(f) for f in value.split(",")]
    if len(parts) != 3 or any(not math.isfinite(f) or f < 0 for f in parts) or abs(sum(parts) - 1) > 1e-6 \
            or parts[0] <= 0:
        raise ValueError(value)
    return value


def check_user_values(cls: type, values: dict[str, Any]) -> None:
    """Check the user's options of a config whose data-derived fields are not known yet (a model's
    config before the vocabulary is built): each value against its declaration, then the rules between
    fields, with every derived field standing at a value no rule refuses."""
    for name, value in values.items():
        coerce(find(cls, name), value, source="")
    probe: dict[str, Any] = {}
    for o in options(cls):
        if o.spec.derived and o.default is MISSING:
            probe[o.name] = 1_000_000  # vocabulary sizes and counts: large enough for any id
    instance = cls(**probe, **values)
    del instance
