"""TwHIN-style heterogeneous graph embeddings (torch), after the-algorithm-ml's `projects/twhin`.

    from models.twhin import TwhinConfig, build_edges, train_twhin, twhin_follow_candidates

    edges = build_edges(follows, engagements, tweets)        # pyarrow tables -> TwhinEdges
    result = train_twhin(edges, TwhinConfig(dim=64))         # -> TwhinEmbeddings
    candidates = twhin_follow_candidates(
        (result.ids("user"), result.embeddings("user")), result.translation("follow"), follows, k=50)

See docs/twhin.md.
"""

from models.twhin.candidates import twhin_follow_candidates
from models.twhin.evaluate import evaluate_twhin_follow_recall, follow_candidates_from_warehouse
from models.twhin.graph import RELATIONS, TWEET, USER, RelationSpec, TwhinEdges, build_edges
from models.twhin.train import TwhinConfig, TwhinEmbeddings, resolve_device, train_twhin

__all__ = [
    "RELATIONS",
    "TWEET",
    "USER",
    "RelationSpec",
    "TwhinConfig",
    "TwhinEdges",
    "TwhinEmbeddings",
    "build_edges",
    "evaluate_twhin_follow_recall",
    "follow_candidates_from_warehouse",
    "resolve_device",
    "train_twhin",
    "twhin_follow_candidates",
]
