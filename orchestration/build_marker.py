"""A side warehouse's marker file: which input (a fingerprint of the raw input and the cut) it was
last built from, so that a build of the same input is reused rather than run again."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

BUILD_MARKER = "eval_build.json"


def built_from(warehouse: Path, fingerprint: str) -> bool:
    """Whether the warehouse's last complete build was of the input `fingerprint` names."""
    marker = warehouse / BUILD_MARKER
    return marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint


def write_build_marker(warehouse: Path, *, fingerprint: str, as_of: datetime, step_seconds: dict[str, float]) -> None:
    """Record a complete build of `fingerprint`'s input as of `as_of` (written after its run succeeded)."""
    (warehouse / BUILD_MARKER).write_text(
        json.dumps({"fingerprint": fingerprint, "as_of": as_of.isoformat(), "step_seconds": step_seconds})
    )
