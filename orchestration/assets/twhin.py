"""TwHIN assets: heterogeneous graph embeddings of users and tweets, trained with torch.

One multi-asset reads the bronze `follows`, `engagements` and `tweets` with deltalake (no Spark),
trains (models/twhin) and writes `twhin_user_embeddings`, `twhin_tweet_embeddings` and
`twhin_relations` with deltalake. See docs/twhin.md. A factory declares it, for the main build and
the training set's representation snapshots (`orchestration.asset_variants`).
"""

import dagster as dg

from models.twhin import TwhinConfig, build_edges, train_twhin
from models.twhin.export import (
    INPUT_COLUMNS,
    RELATIONS_TABLE,
    TWEET_EMBEDDINGS_TABLE,
    USER_EMBEDDINGS_TABLE,
    read_training_tables,
    write_twhin_tables,
)
from orchestration.asset_variants import MAIN, AssetVariant
from orchestration.resources import TwhinResource, WarehouseResource

TWHIN_GROUP = "twhin"
TWHIN_INPUTS = ["follows", "engagements", "tweets"]
TWHIN_KINDS = {"pytorch", "delta"}

_DESCRIPTIONS = {
    USER_EMBEDDINGS_TABLE: "TwHIN user embeddings (user_id, embedding array<float>): follower, "
    "followee and engager in one vector.",
    TWEET_EMBEDDINGS_TABLE: "TwHIN tweet embeddings (tweet_id, embedding array<float>).",
    RELATIONS_TABLE: "TwHIN relation translation vectors: score = dot(lhs, rhs + translation).",
}


def twhin_config(twhin: TwhinResource) -> TwhinConfig:
    return TwhinConfig(
        dim=twhin.dim, epochs=twhin.epochs, seed=twhin.seed, device=twhin.device, num_threads=twhin.threads
    )


def build_twhin_asset(variant: AssetVariant = MAIN) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=variant.op_name("twhin_embeddings"),
        specs=[
            dg.AssetSpec(
                variant.key(name),
                deps=variant.keys(TWHIN_INPUTS),
                group_name=variant.group(TWHIN_GROUP),
                kinds=TWHIN_KINDS,
                description=text,
            )
            for name, text in _DESCRIPTIONS.items()
        ],
        partitions_def=variant.partitions_def,
    )
    def twhin_embeddings(context: dg.AssetExecutionContext, warehouse: WarehouseResource, twhin: TwhinResource):
        warehouse = variant.warehouse(context, warehouse)
        config = twhin_config(twhin)
        tables = read_training_tables({name: warehouse.table_path(name) for name in INPUT_COLUMNS})
        edges = build_edges(tables["follows"], tables["engagements"], tables["tweets"])
        del tables
        context.log.info(
            f"twhin: {edges.num_edges} edges {edges.edges_per_relation()}, "
            f"{ {t: edges.num_nodes(t) for t in edges.node_ids} } nodes"
        )
        result = train_twhin(edges, config, log=context.log.info)
        paths = {name: warehouse.table_path(name) for name in _DESCRIPTIONS}
        rows = write_twhin_tables(result, paths)
        for name in _DESCRIPTIONS:
            yield dg.MaterializeResult(
                asset_key=variant.key(name), metadata=_table_metadata(name, result, config, rows[name], paths[name])
            )

    return twhin_embeddings


def _table_metadata(name: str, result, config: TwhinConfig, rows: int, path) -> dict:
    metadata = {
        "dagster/row_count": rows,
        "path": dg.MetadataValue.path(str(path)),
        "final_loss": result.final_loss,
        "epoch_losses": dg.MetadataValue.json(result.epoch_losses),
        "train_seconds": result.seconds,
        "device": result.device,
        "dim": result.dim,
        "epochs": config.epochs,
    }
    if name == RELATIONS_TABLE:
        metadata["edges_per_relation"] = dg.MetadataValue.json(result.edges_per_relation)
        metadata["relation_losses"] = dg.MetadataValue.json(result.relation_losses)
    return metadata


twhin_assets = [build_twhin_asset()]
