"""The policy thresholds of the data-quality checks (`HOMEFEED_DQ_BOUNDS`): declared here so that the
settings can validate an override without loading the checks themselves (`data_quality.specs`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class QualityBounds:
    """The policy thresholds of the distribution and freshness checks, (min, max) pairs."""

    freshness_hours: float = 48.0
    min_rows: float = 1.0  # rows of every table that must not be empty (TableSpec.non_empty)
    feed_user_share: float = 0.5  # of the users active in the last 7 days, at least this share has a feed
    candidate_user_share: float = 0.5  # ... and a candidate pool
    feed_length: tuple[float, float] = (5.0, 200.0)
    candidates_per_user: tuple[float, float] = (10.0, 1500.0)
    feed_in_network_share: tuple[float, float] = (0.05, 0.95)
    source_share: tuple[float, float] = (0.0, 0.95)  # of the feed rows, those a single source retrieved

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, float | Sequence[float]]) -> QualityBounds:
        """The defaults with `overrides` (by field name) replaced; a pair stays a pair."""
        defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ValueError(f"unknown data-quality bounds {unknown} (known: {sorted(defaults)})")
        values = {}
        for name, value in overrides.items():
            if isinstance(defaults[name], tuple):
                if isinstance(value, (int, float)) or len(value) != 2:
                    raise ValueError(f"data-quality bound {name} is a (min, max) pair, got {value!r}")
                values[name] = (float(value[0]), float(value[1]))
            elif isinstance(value, (int, float)):
                values[name] = float(value)
            else:
                raise ValueError(f"data-quality bound {name} is a number, got {value!r}")
        return replace(cls(), **values)

    def pair(self, name: str) -> tuple[float | None, float | None]:
        value = getattr(self, name)
        return (value[0], value[1]) if isinstance(value, tuple) else (value, None)
