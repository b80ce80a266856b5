"""A Delta table's latest commit, read from its log with deltalake (no Spark): what it wrote and
the `userMetadata` its writer stored (build time, model versions, a training window...)."""

from __future__ import annotations

import json
from pathlib import Path


def last_commit(path: Path) -> dict:
    """The latest entry of the table's history (operation, operationMetrics, userMetadata...)."""
    from deltalake import DeltaTable

    return DeltaTable(str(path)).history(1)[0]


def last_commit_metadata(path: Path) -> dict:
    """The JSON object the latest commit stored as its userMetadata; {} when it stored none."""
    return json.loads(last_commit(path).get("userMetadata") or "{}")
