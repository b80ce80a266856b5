"""Real-time aggregates: a tweet's engagement counts as of an exact moment, not a daily snapshot.

Home Mixer reads tweet engagement counts that are seconds old; a training example must see the
counts as they were at its impression, so these are computed per request time with a sliding range
window over the tweet's own events: each count covers [request_time - window, request_time), never
the request's own moment or anything after it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

MICROS_PER_HOUR = 3_600_000_000


def tweet_counts_before(
    requests: DataFrame,
    engagements: DataFrame,
    *,
    counts: dict[str, tuple[tuple[str, ...], int]],
    time_column: str = "impression_time",
) -> DataFrame:
    """`requests` (with tweet_id and `time_column`) plus one double column per entry of `counts`:
    name -> (actions counted, window in hours), counted over the tweet's engagements in
    [time - window, time). Requests keep all their columns; duplicates are kept."""
    actions = sorted({a for acts, _ in counts.values() for a in acts})
    events = engagements.where(F.col("action").isin(*actions)).select(
        "tweet_id",
        F.unix_micros("created_at").alias("_t"),
        F.col("action").alias("_action"),
        F.lit(False).alias("_is_request"),
    )
    # Each distinct (tweet, moment) is counted once and joined back on those values: a generated
    # row id would not survive the two evaluations of `requests` that a self-join makes.
    moments = requests.select("tweet_id", F.unix_micros(time_column).alias("_t")).distinct()
    timeline = events.unionByName(
        moments.select("tweet_id", "_t", F.lit(None).cast("string").alias("_action"), F.lit(True).alias("_is_request"))
    )
    windowed = []
    for name, (acts, hours) in counts.items():
        frame = Window.partitionBy("tweet_id").orderBy("_t").rangeBetween(-int(hours * MICROS_PER_HOUR), -1)
        # An empty frame sums to null: nothing happened, so 0.
        counted = F.sum(F.when(F.col("_action").isin(*acts), 1.0).otherwise(0.0)).over(frame)
        windowed.append(F.coalesce(counted, F.lit(0.0)).alias(name))
    at_moments = timeline.select("tweet_id", "_t", "_is_request", *windowed).where("_is_request").drop("_is_request")
    return (
        requests.withColumn("_t", F.unix_micros(time_column))
        .join(at_moments, on=["tweet_id", "_t"], how="left")
        .drop("_t")
    )
