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
from jobs.feed_pass.pipeline import PassInputs, ranked_feeds_in_one_pass
from jobs.ranking import FEATURE_TABLES, RankingConfig, fatigue_days, light_ranker_recall
from jobs.train_rankers import current_models, train_rankers
from models.heavy_ranker import DEFAULT_HEAD_WEIGHTS, HeavyRankerConfig
from models.light_ranker import LightRankerConfig
from models.registry import HEAVY_RANKER, LIGHT_RANKER
from orchestration.assets import written_table_result
from orchestration.assets.candidates import CANDIDATE_INPUT_TABLES, CandidatesParams
from orchestration.assets.training import TRAINING_GROUP
from orchestration.dataclass_config import config_from_dataclass
from orchestration.resources import SparkResource, WarehouseResource
from orchestration.training_examples import TRAINING_TABLE

RANKING_GROUP = "ranking"


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


@dg.asset(
    name="ranked_feeds",
    group_name=RANKING_GROUP,
    kinds={"spark", "delta"},
    deps=[*CANDIDATE_INPUT_TABLES, *PASS_TABLES, "candidates", "user_tweet_features", "rankers"],
)
def ranked_feeds_asset(
    config: RankedFeedsParams, spark: SparkResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Each user's ranked For You feed (up to 200 rows), in one pass per block of users: the six
    sources, the light ranker's cut, the heavy ranker on the survivors, the heuristics."""
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
    table = ranked_feeds_in_one_pass(
        inputs,
        as_of=as_of,
        light_model_dir=light_dir,
        light_features=light_features,
        heavy_model_dir=heavy_dir,
        heavy_features=heavy_features,
        config=ranking,
        candidates_config=config.candidates.to_dataclass(),
    )
    overwrite_delta(table, warehouse.table_path("ranked_feeds"), user_metadata=json.dumps(built_with))
    # On a sample of users whose whole pools the heavy ranker scores (the candidate tables).
    tables = {name: read(name) for name in FEATURE_TABLES}
    recall = light_ranker_recall(
        read("candidates"),
        tables,
        light_model_dir=light_dir,
        light_features=light_features,
        heavy_model_dir=heavy_dir,
        heavy_features=heavy_features,
        weights=ranking.weights(),
        keep=ranking.light_keep,
    )
    return written_table_result(
        warehouse,
        "ranked_feeds",
        as_of=as_of.isoformat(),
        light_ranker=f"{light_dir.parent.name} {light_dir.name}",
        heavy_ranker=f"{heavy_dir.parent.name} {heavy_dir.name}",
        light_ranker_recall_of_heavy_top_100=dg.MetadataValue.json(recall),
    )


RANKING_ASSETS = [rankers_asset, ranked_feeds_asset]
