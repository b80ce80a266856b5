"""The synthetic world generator: a Twitter-like social network and its impression log.

    from jobs.synthetic import generate_world, WorldConfig, GenerationSummary
    summary = generate_world(WorldConfig(n_users=10_000, seed=7), out_dir=Path("data/world"))

writes out_dir/raw/<table>/part-*.parquet for each table of core.contract (exact contract
schemas) and the hidden ground truth under out_dir/truth/ (see jobs.synthetic.truth).

Modules: config (WorldConfig, seed streams), users (communities, interests, popularity),
graph (follows), tweets, social (blocks, mutes, lists), impressions (the logging policy),
model (the ground-truth engagement model), engagements, tables/writer (Parquet), truth, world.
"""

from jobs.synthetic.config import GenerationSummary, WorldConfig
from jobs.synthetic.world import generate_world

__all__ = ["GenerationSummary", "WorldConfig", "generate_world"]
