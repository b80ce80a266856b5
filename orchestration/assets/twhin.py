"""TwHIN assets: heterogeneous graph embeddings of users and tweets, trained with torch.

One multi-asset reads the bronze `follows`, `engagements` and `tweets` with deltalake (no Spark),
trains (models/twhin) and writes `twhin_user_embeddings`, `twhin_tweet_embeddings` and
`twhin_relations` with deltalake. See docs/twhin.md.
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
    return TwhinConfig(dim=twhin.dim, epochs=twhin.epochs, seed=twhin.seed, device=twhin.device,
                       num_threads=twhin.threads)


@dg.multi_asset(
    name="twhin_embeddings",
    specs=[
        dg.AssetSpec(name, deps=TWHIN_INPUTS, group_name=TWHIN_GROUP, kinds=TWHIN_KINDS, description=text)
        for name, text in _DESCRIPTIONS.items()
    ],
)
def twhin_embeddings(context: dg.AssetExecutionContext, warehouse: WarehouseResource, twhin: TwhinResource):
    config = twhin_config(twhin)
    tables = read_training_tables({name: warehouse.table_path(name) for name in INPUT_COLUMNS})
    edges = build_edges(tables["follows"], tables["engagements"], tables["tweets"])
    del tables
    context.log.info(f"twhin: {edges.num_edges} edges {edges.edges_per_relation()}, "
                     f"{ {t: edges.num_nodes(t) for t in edges.node_ids} } nodes")
    result = train_twhin(edges, config, log=context.log.info)
    paths = {name: warehouse.table_path(name) for name in _DESCRIPTIONS}
    rows = write_twhin_tables(result, paths)
    common = {
        "final_loss": result.final_loss,
        "epoch_losses": dg.MetadataValue.json(result.epoch_losses),
        "train_seconds": result.seconds,
        "device": result.device,
        "dim": result.dim,
        "epochs": config.epochs,
    }
    for name in _DESCRIPTIONS:
        metadata = {"dagster/row_count": rows[name], "path": dg.MetadataValue.path(str(paths[name])), **common}
        if name == RELATIONS_TABLE:
            metadata["edges_per_relation"] = dg.MetadataValue.json(result.edges_per_relation)
            metadata["relation_losses"] = dg.MetadataValue.json(result.relation_losses)
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)


twhin_assets = [twhin_embeddings]
