"""Dagster run config made from a dataclass: the job's parameters are declared once, in the
dataclass next to the transform, and the asset's config (launchpad, run config) is built from it.

    class CandidatesParams(config_from_dataclass(CandidatesConfig)):  # the asset's `config` type
        ...

    settings = config.to_dataclass()  # in the asset: a CandidatesConfig

Each field keeps its name, type and default. Dagster config holds lists and dicts, not tuples or
mappings: a `tuple[X, ...]` field becomes `list[X]` and a `Mapping[K, V]` one `dict[K, V]`, and
`to_dataclass` turns them back. A subclass may add fields of its own (they are not passed on).
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import dagster as dg
import pydantic

_SCALARS = (bool, int, float, str)


class DataclassConfig(dg.Config):
    """A Dagster config whose fields are those of `dataclass_type` (see `config_from_dataclass`)."""

    dataclass_type: ClassVar[type]

    def to_dataclass(self) -> Any:
        """The dataclass with this config's values (fields left out of the config keep their defaults)."""
        hints = typing.get_type_hints(self.dataclass_type)
        values = {
            f.name: _to_python(getattr(self, f.name), hints[f.name])
            for f in dataclasses.fields(self.dataclass_type)
            if f.name in type(self).model_fields
        }
        return self.dataclass_type(**values)


def config_from_dataclass(dataclass_type: type, *, exclude: tuple[str, ...] = ()) -> type[DataclassConfig]:
    """A `dg.Config` class with a field per init field of `dataclass_type` (but `exclude`): the same
    name, the type as Dagster config can hold it, the dataclass's default."""
    unknown = set(exclude) - {f.name for f in dataclasses.fields(dataclass_type)}
    if unknown:
        raise ValueError(f"{dataclass_type.__name__} has no fields {sorted(unknown)}")
    hints = typing.get_type_hints(dataclass_type)
    definitions = {
        f.name: (_config_type(hints[f.name], f.name), _config_default(f))
        for f in dataclasses.fields(dataclass_type)
        if f.init and f.name not in exclude
    }
    model = pydantic.create_model(
        f"{dataclass_type.__name__}Fields",
        __base__=DataclassConfig,
        __doc__=f"The fields of `{dataclass_type.__module__}.{dataclass_type.__name__}`.",
        **definitions,
    )
    model.dataclass_type = dataclass_type
    return model


def _config_type(annotation: Any, name: str) -> Any:
    """`annotation` as a type Dagster config accepts."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALARS:
        return annotation
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[_config_type(args[0], name)]
    if origin is list:
        return list[_config_type(args[0], name)]
    if origin in (dict, Mapping):
        return dict[_config_type(args[0], name), _config_type(args[1], name)]
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _config_type(inner, name) | None
    raise TypeError(
        f"field {name!r}: {annotation!r} has no Dagster config type (scalars, tuple[X, ...], "
        f"list, Mapping/dict and Optional of those are supported)"
    )


def _config_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ...  # required
    return _to_config(value)


def _to_config(value: Any) -> Any:
    """A default as Dagster config holds it: tuples as lists, mappings as dicts."""
    if isinstance(value, (tuple, list)):
        return [_to_config(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_config(v) for k, v in value.items()}
    return value


def _to_python(value: Any, annotation: Any) -> Any:
    """A config value as the dataclass field's `annotation` declares it: lists back to tuples."""
    if typing.get_origin(annotation) is tuple and isinstance(value, list):
        return tuple(value)
    return value
