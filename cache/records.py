"""Records: `@record`, a light `@dataclass` for the plain data classes on the commands' paths.

Why not `dataclasses`: every pydock command is a fresh Python process, and `pydock run` has a
budget of 0.1 s for the whole of it. On Python 3.11 `import dataclasses` pulls `inspect` (and
with it ast, dis, tokenize), ~9 ms, and `@dataclass` compiles each generated method from
source, ~0.5 ms per class: with the ~20 records a run touches, a quarter of the budget. A
`@record` class gets generic methods instead (no code generation), which costs microseconds
to define and a few microseconds more per instance, nothing a command notices.

What it does is the subset of dataclasses those records use, with the same meaning: fields in
annotation order, defaults and `field(default_factory=...)`, `field(compare=False)`,
`frozen=True` (assignment raises, instances hash by their compared fields), `__repr__`,
`__eq__`, `__match_args__`, and `asdict` / `fields` / `replace`. Not supported, refused when seen: field
inheritance from a base record, `__post_init__`, `InitVar`/`ClassVar` annotations.

Used by cache/, executor/ and the parts of builder/ and frontend/ a build goes through; the
Dockerfile's typed instructions, parser and planner (builder/instructions.py, parser.py,
dag.py: keyword-only fields, inheritance, `dataclasses.replace`; run once per changed
Dockerfile, then cached) keep real dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenRecordError(AttributeError):
    """Assignment to a field of a frozen record (as dataclasses.FrozenInstanceError)."""


class Field:
    """One field of a record: its name, default or default factory, and whether `==`
    (and, for frozen records, the hash) uses it."""

    __slots__ = ("name", "default", "default_factory", "compare")

    def __init__(
        self, default: Any = MISSING, default_factory: Any = MISSING, compare: bool = True
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    compare: bool = True,
) -> Any:
    """A field with a default, a default factory (for mutable defaults) or compare=False."""
    return Field(default, default_factory, compare)


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Make `cls` a record (use as `@record` or `@record(frozen=True)`)."""

    def wrap(c: type[T]) -> type[T]:
        return _make(c, frozen)

    return wrap if cls is None else wrap(cls)


def _make(cls: type[T], frozen: bool) -> type[T]:
    for base in cls.__mro__[1:]:
        if "__record_fields__" in base.__dict__:
            raise TypeError(f"{cls.__name__}: records do not inherit fields")
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: records have no __post_init__")
    fields_: list[Field] = []
    seen_default = False
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        if text.startswith(("ClassVar", "InitVar", "typing.ClassVar", "dataclasses.InitVar")):
            raise TypeError(f"{cls.__name__}.{name}: ClassVar/InitVar are not record fields")
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: non-default field {name!r} follows a default")
        seen_default = seen_default or has_default
        if f.default is not MISSING:
            setattr(cls, name, f.default)  # as dataclasses: the default is a class attribute
        elif isinstance(value, Field):
            delattr(cls, name)
        fields_.append(f)
    all_fields = tuple(fields_)
    compared = tuple(f.name for f in all_fields if f.compare)
    cls.__record_fields__ = all_fields  # type: ignore[attr-defined]
    cls.__match_args__ = tuple(f.name for f in all_fields)  # type: ignore[attr-defined]
    cls.__init__ = _init_for(cls.__name__, all_fields)  # type: ignore[misc]
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr  # type: ignore[method-assign]
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq_for(compared)  # type: ignore[method-assign]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign]
        cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign]
    # As dataclasses: a __hash__ the class defines stays; else frozen records hash by their
    # compared fields and mutable ones are unhashable.
    if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
        cls.__hash__ = _hash_for(compared) if frozen else None  # type: ignore[assignment]
    return cls


def _init_for(cls_name: str, all_fields: tuple[Field, ...]) -> Callable[..., None]:
    count = len(all_fields)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if len(args) > count:
            raise TypeError(f"{cls_name}() takes {count} arguments but {len(args)} were given")
        put = object.__setattr__
        for i, f in enumerate(all_fields):
            if i < len(args):
                if f.name in kwargs:
                    raise TypeError(f"{cls_name}() got multiple values for argument {f.name!r}")
                value = args[i]
            elif f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{cls_name}() missing required argument: {f.name!r}")
            put(self, f.name, value)
        if kwargs:
            raise TypeError(
                f"{cls_name}() got an unexpected keyword argument {next(iter(kwargs))!r}"
            )

    return __init__


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__)
    return f"{type(self).__qualname__}({inner})"


def _eq_for(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:  # noqa: N807
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    return __eq__


def _hash_for(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:  # noqa: N807
        return hash(tuple(getattr(self, n) for n in names))

    return __hash__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen record")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenRecordError(f"cannot delete field {name!r} of a frozen record")


def is_record(obj: Any) -> bool:
    return hasattr(type(obj) if not isinstance(obj, type) else obj, "__record_fields__")


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    return (obj if isinstance(obj, type) else type(obj)).__record_fields__


def replace(obj: T, **changes: Any) -> T:
    """A new record like `obj` with `changes` (as dataclasses.replace)."""
    if not is_record(obj) or isinstance(obj, type):
        raise TypeError("replace() should be called on record instances")
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = changes.keys() - values.keys()
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    return type(obj)(**{**values, **changes})


def asdict(obj: Any) -> dict[str, Any]:
    """A record as a dict, records inside it (in lists, tuples and dicts too) as dicts. Other
    values are not copied (dataclasses.asdict deep-copies them; ours go straight to JSON)."""
    if not is_record(obj) or isinstance(obj, type):
        raise TypeError("asdict() should be called on record instances")
    return _value(obj)


def _value(v: Any) -> Any:
    if hasattr(type(v), "__record_fields__"):
        return {f.name: _value(getattr(v, f.name)) for f in v.__record_fields__}
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, tuple):
        items = [_value(x) for x in v]
        return type(v)(*items) if hasattr(v, "_fields") else tuple(items)
    if isinstance(v, dict):
        return {_value(k): _value(x) for k, x in v.items()}
    return v
