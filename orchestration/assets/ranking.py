"""The rankers and the precomputed feeds.

`rankers` (group `training`): trains the light and heavy rankers on `training_examples`, registers
both under `<warehouse>/models` and promotes each version that is not worse than the current one.
`ranked_feeds` (group `ranking`): every user's candidate pool scored by the promoted models and
shaped by the feed heuristics (docs/ranking.md). Neither is in the default build: training needs
the training set, and the feeds need a promoted model.
"""

import json

import dagster as dg

from core.feed_heuristics import FeedHeuristics
from features.registry import registry_hash
from jobs.candidates.config import CandidateInputs
from jobs.delta_io import overwrite_delta, read_delta
from jobs.feed_pass.pipeline import PassInputs, prepare_pass
from jobs.feed_pass.sample import light_ranker_recall
from jobs.ranking import RankingConfig, fatigue_days
from jobs.train_rankers import current_models, train_rankers
from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS, HeavyRankerConfig
from models.light_ranker import LightRankerConfig
from models.registry import HEAVY_RANKER, LIGHT_RANKER
from orchestration.assets import table_result
from orchestration.assets.candidates import CANDIDATE_INPUT_TABLES, CandidatesParams
from orchestration.assets.training import TRAINING_GROUP
from orchestration.dataclass_config import config_from_dataclass
from orchestration.resources import SparkResource, WarehouseResource
from orchestration.training_examples import TRAINING_TABLE

RANKING_GROUP = "ranking"
SAMPLE_TABLE = "ranked_feeds_sample"


class RankersParams(dg.Config):
    seed: int = 0
    heavy_max_epochs: int = HeavyRankerConfig.max_epochs
    heavy_threads: int = 1
    light_max_rounds: int = LightRankerConfig.max_rounds


class RankedFeedsParams(config_from_dataclass(FeedHeuristics)):
    """`core.feed_heuristics.FeedHeuristics`, of `jobs.ranking.RankingConfig` the heavy ranker's
    share of the pool and the head weights (all of them, the defaults filled in), and the
    candidate sources' `jobs.candidates.config.CandidatesConfig`."""

    light_keep: int = RankingConfig.light_keep
    head_weights: dict[str, float] = dict(DEFAULT_HEAD_WEIGHTS)
    # The candidate sources' settings the pass retrieves with (the `candidates` asset's).
    candidates: CandidatesParams = CandidatesParams()

    def to_config(self) -> RankingConfig:
        return RankingConfig(
            light_keep=self.light_keep, head_weights=dict(self.head_weights), heuristics=self.to_dataclass()
        )


@dg.asset(name="rankers", group_name=TRAINING_GROUP, kinds={"xgboost", "pytorch"}, deps=[TRAINING_TABLE])
def rankers_asset(config: RankersParams, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The light (xgboost) and heavy (torch multi-task) rankers, registered and promoted when not worse."""
    summary = train_rankers(
        warehouse.root,
        models_dir=warehouse.models_dir,
        light_config=LightRankerConfig(seed=config.seed, max_rounds=config.light_max_rounds),
        heavy_config=HeavyRankerConfig(
            seed=config.seed, max_epochs=config.heavy_max_epochs, num_threads=config.heavy_threads
        ),
    )
    models = summary["models"]
    return dg.MaterializeResult(
        metadata={
            "training_window": dg.MetadataValue.json(summary["training_window"] or {}),
            **{f"{name}_version": models[name]["version"] for name in models},
            **{f"{name}_promoted": models[name]["promoted"] for name in models},
            **{f"{name}_decision": models[name]["reason"] for name in models},
            "heavy_validation_logloss": models[HEAVY_RANKER]["metrics"].get("validation_logloss"),
            "light_validation_auc": models[LIGHT_RANKER]["metrics"].get("validation_auc"),
        }
    )


# What the per-user pass reads beyond the candidate inputs (`jobs.feed_pass.pipeline.PassInputs`).
PASS_TABLES = (
    "user_features",
    "author_features",
    "tweet_features",
    "user_author_features",
    "simclusters_tweet_embeddings",
)


RANKED_FEEDS_DEPS = [*CANDIDATE_INPUT_TABLES, *PASS_TABLES, "rankers"]


@dg.multi_asset(
    name="ranked_feeds",
    specs=[
        dg.AssetSpec(
            "ranked_feeds",
            deps=RANKED_FEEDS_DEPS,
            group_name=RANKING_GROUP,
            kinds={"spark", "delta"},
            description="Each user's ranked For You feed (up to 200 rows), in one pass per block of users: the "
            "six sources, the light ranker's cut, the heavy ranker on the survivors, the heuristics.",
        ),
        dg.AssetSpec(
            SAMPLE_TABLE,
            deps=RANKED_FEEDS_DEPS,
            group_name=RANKING_GROUP,
            kinds={"spark", "delta"},
            description="What the pass did for a fixed sample of users, in full: every merged candidate, the "
            "filter that removed it, its light and heavy scores and ranks, its features, its feed rank.",
        ),
    ],
)
def ranked_feeds_asset(config: RankedFeedsParams, spark: SparkResource, warehouse: WarehouseResource):
    """`ranked_feeds` and `ranked_feeds_sample` from one prepared pass (jobs/feed_pass)."""
    session = spark.get_session()
    read = lambda name: read_delta(session, warehouse.table_path(name))  # noqa: E731
    models = current_models(warehouse.root, models_dir=warehouse.models_dir)
    (light_dir, light_features), (heavy_dir, heavy_features) = models[LIGHT_RANKER], models[HEAVY_RANKER]
    as_of, ranking = warehouse.now(), config.to_config()
    inputs = PassInputs(
        candidates=CandidateInputs(**{name: read(name) for name in CANDIDATE_INPUT_TABLES}),
        **{name: read(name) for name in PASS_TABLES},
        fatigue=fatigue_days(read("engagements"), read("tweets"), as_of=as_of),
    )
    built_with = {
        "as_of": as_of.isoformat(),
        "light_ranker": f"{light_dir.parent.name}/{light_dir.name}",
        "heavy_ranker": f"{heavy_dir.parent.name}/{heavy_dir.name}",
        "feature_registry": registry_hash(),
    }
    prepared = prepare_pass(
        inputs,
        as_of=as_of,
        light_model_dir=light_dir,
        light_features=light_features,
        heavy_model_dir=heavy_dir,
        heavy_features=heavy_features,
        config=ranking,
        candidates_config=config.candidates.to_dataclass(),
    )
    overwrite_delta(prepared.feeds(), warehouse.table_path("ranked_feeds"), user_metadata=json.dumps(built_with))
    overwrite_delta(prepared.sample(), warehouse.table_path(SAMPLE_TABLE), user_metadata=json.dumps(built_with))
    recall = light_ranker_recall(read(SAMPLE_TABLE), keep=ranking.light_keep)
    yield table_result(
        warehouse,
        "ranked_feeds",
        as_of=as_of.isoformat(),
        light_ranker=f"{light_dir.parent.name} {light_dir.name}",
        heavy_ranker=f"{heavy_dir.parent.name} {heavy_dir.name}",
        light_ranker_recall_of_heavy_top_100=dg.MetadataValue.json(recall),
    )
    yield table_result(warehouse, SAMPLE_TABLE, users=recall["users"])


RANKING_ASSETS = [rankers_asset, ranked_feeds_asset]
