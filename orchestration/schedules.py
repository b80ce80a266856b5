"""When builds start: a daily schedule, and a sensor that starts one when new raw input lands."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from orchestration.jobs import daily_build_job
from orchestration.resources import WarehouseResource

DAILY_BUILD_CRON = "0 4 * * *"  # 04:00 UTC, after the day's logs have landed


def raw_input_fingerprint(raw_dir: Path) -> str | None:
    """A digest of every file under `raw_dir` (relative path, size, modification time), or None when
    the folder does not exist or holds no file: it changes when a file lands, grows or is replaced."""
    if not raw_dir.is_dir():
        return None
    entries = sorted(
        f"{path.relative_to(raw_dir)}\t{stat.st_size}\t{stat.st_mtime_ns}"
        for path in raw_dir.rglob("*")
        if path.is_file() and not path.name.startswith(".")
        for stat in [path.stat()]
    )
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16] if entries else None


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# A run still "started" after this long was left by a process that died (run monitoring is off by
# default): it must not hold every later build back.
STALE_RUN_AFTER = timedelta(hours=24)


def build_in_progress(instance: dg.DagsterInstance, *, now: datetime | None = None) -> str | None:
    """The id of a daily build that has not finished yet (started in the last day), if any: two builds
    at once would write the same tables and race to publish."""
    since = (now or datetime.now(UTC)) - STALE_RUN_AFTER
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=daily_build_job.name, statuses=_UNFINISHED, created_after=since), limit=1
    )
    return runs[0].run_id if runs else None


@dg.schedule(
    name="daily_build_schedule",
    job=daily_build_job,
    cron_schedule=DAILY_BUILD_CRON,
    execution_timezone="UTC",
    description="The daily build at 04:00 UTC, unless one is still running.",
)
def daily_build_schedule(context: dg.ScheduleEvaluationContext):
    running = build_in_progress(context.instance)
    if running:
        return dg.SkipReason(f"daily build {running} is still running")
    return dg.RunRequest(run_key=None)


@dg.sensor(
    name="raw_input_sensor",
    job=daily_build_job,
    minimum_interval_seconds=300,
    description="Starts the daily build when the raw input folder has changed and then stayed the same "
    "for one evaluation (so a file still being written does not start a build), and no "
    "daily build is running.",
)
def raw_input_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    fingerprint = raw_input_fingerprint(warehouse.raw_dir)
    if fingerprint is None:
        return dg.SkipReason(f"no raw input in {warehouse.raw_dir}")
    running = build_in_progress(context.instance)
    if running:  # the cursor stays: the input is looked at again once that build has finished
        return dg.SkipReason(f"daily build {running} is still running")
    cursor = json.loads(context.cursor) if context.cursor else {}
    if fingerprint == cursor.get("requested"):
        return dg.SkipReason(f"raw input unchanged since the last build request ({fingerprint})")
    if fingerprint != cursor.get("seen"):
        context.update_cursor(json.dumps({**cursor, "seen": fingerprint}))
        return dg.SkipReason(f"raw input changed ({fingerprint}); waiting one evaluation for it to settle")
    context.update_cursor(json.dumps({"seen": fingerprint, "requested": fingerprint}))
    return dg.RunRequest(run_key=f"raw-input-{fingerprint}", tags={"homefeed/raw_input": fingerprint})
