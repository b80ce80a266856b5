"""The per-user pass against the three steps it replaces, on one generated world, as JSON.

    python -m benchmarks.feed_pass [--users 2000] [--workdir DIR]

A world of `--users` is generated and built (the default build, no checks) as of its end, small
fixed rankers are promoted (models.fixed_rankers: the models' cost, not their quality, is what is
timed), and then, in one Spark session, each path writes its feeds to a scratch Delta table:

- `three_steps`: the `candidates` table, the `user_tweet_features` table over it, and
  `jobs.ranking.ranked_feeds` over both (what the build did before jobs/feed_pass);
- `one_pass`: `jobs.feed_pass.pipeline.ranked_feeds_in_one_pass` from the same inputs.

Both run twice, alternating, and the faster of each is kept; `speedup` = three_steps / one_pass.
The feeds are compared as tests/test_feed_pass.py does: `rows_in_one_only` counts the (user, tweet)
rows of one table that the other lacks (near-ties at the light ranker's or the feed's cut).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.measure import benchmark_workdir


def _build(users: int, workdir: Path):
    from core.settings import load_settings
    from evaluation.worlds import world_end_time
    from jobs.synthetic import WorldConfig, generate_world
    from models.fixed_rankers import register_fixed_rankers
    from orchestration.run import run_assets

    world = workdir / "world"
    generate_world(WorldConfig(n_users=users, seed=3), out_dir=world)
    settings = load_settings(
        warehouse=workdir / "warehouse", raw_input=world / "raw", as_of=world_end_time(world), spark_master="local[2]"
    )
    outcome = run_assets(settings, checks=False)
    if not outcome.success:
        raise SystemExit(f"the build failed: {outcome.failure_text()}")
    register_fixed_rankers(settings.warehouse, reason="benchmark")
    return settings


def _timed(write) -> float:
    start = time.perf_counter()
    write()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with benchmark_workdir(args.workdir, keep=False, prefix="homefeed-feed-pass-") as workdir:
        settings = _build(args.users, workdir)
        print(json.dumps(measure(settings, workdir / "scratch", users=args.users), indent=2))


def measure(settings, scratch: Path, *, users: int) -> dict:
    from orchestration.resource_bindings import resources_from_settings

    spark = resources_from_settings(settings)["spark"].get_session()
    paths = _Paths(spark, settings, scratch)
    times: dict[str, list[float]] = {"three_steps": [], "one_pass": []}
    for _ in range(2):
        times["three_steps"].append(_timed(paths.three_steps))
        times["one_pass"].append(_timed(paths.one_pass))
    best = {name: min(values) for name, values in times.items()}
    return {
        "benchmark": "feed_pass",
        "users": users,
        "feed_rows": paths.rows("one_pass"),
        # (user, tweet) rows in one table only: near-ties at a cut (float32 noise of the heavy ranker).
        "rows_in_one_only": paths.rows_in_one_only(),
        "three_steps_seconds": round(best["three_steps"], 1),
        "one_pass_seconds": round(best["one_pass"], 1),
        "speedup": round(best["three_steps"] / best["one_pass"], 2),
        "runs": {name: [round(t, 1) for t in values] for name, values in times.items()},
    }


class _Paths:
    """Both paths over one warehouse, each writing its feeds under `scratch`."""

    def __init__(self, spark, settings, scratch: Path):
        from jobs.candidates.config import CandidateInputs
        from jobs.delta_io import read_delta
        from jobs.ranking import fatigue_days
        from jobs.train_rankers import current_models
        from models.registry import HEAVY_RANKER, LIGHT_RANKER

        self.spark, self.settings, self.scratch = spark, settings, scratch
        self.read = lambda name: read_delta(spark, settings.tables_dir / name)
        (self.light_dir, self.light), (self.heavy_dir, self.heavy) = (
            current_models(settings.warehouse)[name] for name in (LIGHT_RANKER, HEAVY_RANKER)
        )
        self.inputs = CandidateInputs(**{name: self.read(name) for name in CandidateInputs.__dataclass_fields__})
        self.fatigue = lambda: fatigue_days(self.read("engagements"), self.read("tweets"), as_of=settings.as_of)

    def _models(self) -> dict:
        return dict(
            light_model_dir=self.light_dir,
            light_features=self.light,
            heavy_model_dir=self.heavy_dir,
            heavy_features=self.heavy,
        )

    def three_steps(self) -> None:
        from features.user_tweet import user_tweet_features
        from jobs.candidates.indexes import collect_indexes
        from jobs.candidates.pipeline import select_candidates, tagged_candidates
        from jobs.candidates.requests import candidate_requests
        from jobs.delta_io import overwrite_delta, read_delta
        from jobs.ranking import FEATURE_TABLES, ranked_feeds

        as_of, read = self.settings.as_of, self.read
        indexes = collect_indexes(self.inputs, as_of=as_of)
        candidates = select_candidates(
            tagged_candidates(candidate_requests(self.inputs, as_of=as_of), indexes), as_of=as_of
        )
        overwrite_delta(candidates, self.scratch / "candidates")
        candidates = read_delta(self.spark, self.scratch / "candidates")
        pairs = user_tweet_features(
            candidates,
            read("simclusters_interested_in"),
            read("simclusters_tweet_embeddings"),
            read("twhin_user_embeddings"),
            read("twhin_tweet_embeddings"),
            as_of=as_of,
            tweets=read("tweets"),
            engagements=read("engagements"),
            follows=read("follows"),
        )
        overwrite_delta(pairs, self.scratch / "user_tweet_features")
        tables = {name: read(name) for name in FEATURE_TABLES}
        tables["user_tweet_features"] = read_delta(self.spark, self.scratch / "user_tweet_features")
        feeds = ranked_feeds(candidates, tables, self.fatigue(), **self._models())
        overwrite_delta(feeds, self.scratch / "three_steps")

    def one_pass(self) -> None:
        from jobs.delta_io import overwrite_delta
        from jobs.feed_pass.pipeline import PassInputs, ranked_feeds_in_one_pass

        inputs = PassInputs(
            candidates=self.inputs,
            user_features=self.read("user_features"),
            author_features=self.read("author_features"),
            tweet_features=self.read("tweet_features"),
            user_author_features=self.read("user_author_features"),
            simclusters_tweet_embeddings=self.read("simclusters_tweet_embeddings"),
            fatigue=self.fatigue(),
        )
        feeds = ranked_feeds_in_one_pass(inputs, as_of=self.settings.as_of, **self._models())
        overwrite_delta(feeds, self.scratch / "one_pass")

    def _pairs(self, name: str) -> set[tuple[int, int]]:
        from jobs.delta_io import read_delta

        rows = read_delta(self.spark, self.scratch / name).select("user_id", "tweet_id").toArrow()
        return set(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))

    def rows(self, name: str) -> int:
        from jobs.delta_io import rows_in_table

        return rows_in_table(self.scratch / name)

    def rows_in_one_only(self) -> int:
        return len(self._pairs("three_steps") ^ self._pairs("one_pass"))


if __name__ == "__main__":
    main(sys.argv[1:])
