"""The Dagster instance the command line records its runs in: the folder `make dagster` opens, so a
run started by `homefeed run` or `homefeed demo` shows up in the UI with its materializations, row
counts and check results."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

# SQLite storage in the folder (Dagster's default for a DAGSTER_HOME without storage settings);
# infra/dagster/dagster.yaml is the deployment's Postgres-backed one.
LOCAL_INSTANCE_CONFIG = "telemetry:\n  enabled: false\n"


def local_instance(dagster_home: Path) -> dg.DagsterInstance:
    """The instance in `dagster_home`, created with a dagster.yaml of its own when the folder is new."""
    home = Path(dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_CONFIG)
    return dg.DagsterInstance.from_config(str(home))
