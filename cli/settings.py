"""The settings a command runs with: its flags over the environment, and a generated world's end as the
build time of a build of it."""

from __future__ import annotations

import argparse

from core.settings import HomefeedSettings, load_settings


def settings_from_args(args: argparse.Namespace) -> HomefeedSettings:
    return with_world_build_time(
        load_settings(
            warehouse=getattr(args, "warehouse", None),
            raw_input=getattr(args, "input", None),
            redis_url=getattr(args, "redis_url", None),
            redis_cluster=getattr(args, "redis_cluster", None),
        )
    )


def with_world_build_time(settings: HomefeedSettings) -> HomefeedSettings:
    """A build of a `homefeed generate` world (its `truth/` beside the raw input) defaults to the
    world's end as its build time, not the wall clock: the world's tweets are weeks old today, and
    every freshness window would be empty. HOMEFEED_AS_OF still wins."""
    from evaluation.worlds import world_end_time

    world = settings.raw_dir.parent
    if settings.as_of is not None or not (world / "truth" / "metadata.json").is_file():
        return settings
    return settings.model_copy(update={"as_of": world_end_time(world)})
