"""Counts for the asset's metadata: aggregate expressions for `DataFrame.observe`, computed in the
pass that writes the table."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from core.sources import CANDIDATE_SOURCES
from jobs.candidates.columns import count_where
from jobs.candidates.config import DEFAULTS, REMOVAL_REASONS, CandidatesConfig


def retrieval_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over `tagged_candidates(...)` rows: `retrieved_<source>` (rows each source produced),
    `removed_<reason>` (rows removed by each filter, and by the total cap: REMOVAL_REASONS)."""
    return [
        count_where(F.col(f"{s}_rank").isNotNull()).alias(f"retrieved_{s}")
        for s in CANDIDATE_SOURCES
        if s in config.sources
    ] + [count_where(F.col("filtered_by") == F.lit(r)).alias(f"removed_{r}") for r in REMOVAL_REASONS]


def kept_metrics(config: CandidatesConfig = DEFAULTS) -> list[Column]:
    """Over the `candidates` rows: `kept_<source>`, `rows`, `users`."""
    return [
        count_where(F.col(f"{s}_rank").isNotNull()).alias(f"kept_{s}") for s in CANDIDATE_SOURCES if s in config.sources
    ] + [F.count(F.lit(1)).alias("rows"), count_where(F.col("pool_rank") == 1).alias("users")]
