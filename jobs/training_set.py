"""The training set: one row per impression, the labels of what followed it, and every registered
feature as it was known at the impression.

Point in time, feature by feature (no input stamped at or after the impression is read):

* user, author and user-author features: the batch functions of `features/tables.py` as of the
  impression's daily snapshot, the UTC midnight at or before it (they read events strictly
  before their `as_of`). One call per day of the window, on that day's impressions only.
* tweet features: the content columns of the tweet row, its age at the impression, engagement
  counts over [impression - window, impression) (`features/realtime.py`, the windows of
  `TWEET_ENGAGEMENT_COUNTS`), the author's follower count and verification from the snapshot.
* user-tweet features: the SimClusters dot product of the user's InterestedIn with the tweet's
  SimClusters embedding recomputed at each daily snapshot from the engagements before it, and the
  TwHIN cosine. InterestedIn, the RealGraph scores and the TwHIN embeddings are `Representations`
  built from input truncated at a moment (the caller builds them): one build per snapshot day,
  made at the day's first impression time (what serving sees: the latest daily build), or one for
  the whole window, made at its start (cheaper; the tweets of later days mostly lack TwHIN
  vectors). A build later than the first impression it would serve is refused, since a model
  trained on the window's own engagements would leak its labels.
* candidate-pool features (source flags and scores, pool rank, social proof) stay at their
  defaults: an impression does not record which source retrieved it.

The window ends one label window before the build time, so that every impression has had its
full label window to collect actions (`TrainingWindow.ending_at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from core.heads import HEADS
from features.labels import LabelConfig, impression_labels, time_split
from features.realtime import tweet_counts_before
from features.registry import FEATURES, features_for
from features.tables import (
    DEFAULT_CONFIG,
    TWEET_ENGAGEMENT_COUNTS,
    FeatureConfig,
    author_features,
    like_rate_24h,
    tweet_content_columns,
    user_author_features,
    user_features,
)
from features.user_tweet import user_tweet_features
from features.vectors import qualified, with_default
from jobs.simclusters import tweet_embeddings

EXAMPLE_KEYS = ("user_id", "tweet_id", "author_id", "impression_time", "snapshot_time", "split")
MICROS_PER_DAY = 86_400_000_000
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TrainingWindow:
    """Impressions in [start, end): train before validation_start, validation until test_start,
    test from test_start."""

    start: datetime
    end: datetime
    validation_start: datetime
    test_start: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end", "validation_start", "test_start"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (got {getattr(self, name)!r})")
        if not self.start < self.validation_start <= self.test_start < self.end:
            raise ValueError(
                "need start < validation_start <= test_start < end, got "
                f"{self.start}, {self.validation_start}, {self.test_start}, {self.end}"
            )

    @classmethod
    def ending_at(
        cls,
        build_time: datetime,
        *,
        days: float = 4.0,
        validation_days: float = 1.0,
        test_days: float = 1.0,
        label_window: timedelta = LabelConfig.label_window,
    ) -> TrainingWindow:
        """The last `days` of impressions whose label window has closed by `build_time`."""
        end = build_time - label_window
        test_start = end - timedelta(days=test_days)
        return cls(
            start=end - timedelta(days=days),
            end=end,
            validation_start=test_start - timedelta(days=validation_days),
            test_start=test_start,
        )

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name).isoformat() for name in ("start", "validation_start", "test_start", "end")}


@dataclass(frozen=True)
class Representations:
    """Learned tables built from input truncated at `as_of` (RealGraph scores, SimClusters
    InterestedIn, TwHIN embeddings)."""

    as_of: datetime
    realgraph: DataFrame
    simclusters_interested_in: DataFrame
    twhin_user_embeddings: DataFrame
    twhin_tweet_embeddings: DataFrame


def snapshot_days(start: datetime, end: datetime) -> list[datetime]:
    """The UTC midnights d with floor_day(start) <= d < end."""
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def first_impression_of_day(day: datetime, window: TrainingWindow) -> datetime:
    """The earliest impression time that a snapshot day's examples can have."""
    return max(day, window.start)


def representations_per_day(
    representations: Representations | Mapping[datetime, Representations],
    *,
    days: list[datetime],
    window: TrainingWindow,
) -> dict[datetime, Representations]:
    """Each snapshot day's representations; refuses a missing day or one built after the first
    impression that would use it (a model trained on the window's own engagements leaks its labels)."""
    if isinstance(representations, Representations):
        representations = dict.fromkeys(days, representations)
    missing = [day.isoformat() for day in days if day not in representations]
    if missing:
        raise ValueError(f"no representations for the snapshot days {', '.join(missing)}")
    for day in days:
        built, first = representations[day].as_of, first_impression_of_day(day, window)
        if built > first:
            raise ValueError(
                f"representations built as of {built.isoformat()} are later than the impressions of "
                f"{day.date()} they would serve (from {first.isoformat()}): they were trained on the window's "
                "own engagements. Build them from input truncated at that time."
            )
    return {day: representations[day] for day in days}


def _snapshot_of(time_column: str) -> Column:
    """The UTC midnight at or before the time (independent of the session time zone)."""
    micros = F.unix_micros(F.col(time_column))
    return F.timestamp_micros(micros - F.pmod(micros, F.lit(MICROS_PER_DAY)))


def _day_features(
    day_examples: DataFrame,
    day: datetime,
    *,
    users: DataFrame,
    follows: DataFrame,
    mutual_follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
    representations: Representations,
    config: FeatureConfig,
) -> DataFrame:
    """One snapshot day's examples joined to the user, author, user-author and user-tweet features as of `day`."""
    pairs = day_examples.select("user_id", "author_id").distinct()
    user = qualified(
        user_features(users, follows, mutual_follows, tweets, engagements, social_actions, as_of=day),
        "user_features",
        "user",
    ).join(pairs.select("user_id").distinct(), on="user_id", how="left_semi")
    author = qualified(
        author_features(users, follows, tweets, engagements, social_actions, as_of=day, config=config),
        "author_features",
        "author",
    ).join(pairs.select("author_id").distinct(), on="author_id", how="left_semi")
    user_author = qualified(
        user_author_features(follows, tweets, engagements, representations.realgraph, as_of=day, config=config),
        "user_author_features",
        "user_author",
    ).join(pairs, on=["user_id", "author_id"], how="left_semi")
    sc_tweets = tweet_embeddings(
        engagements.where(F.col("created_at") < F.lit(day)),
        representations.simclusters_interested_in,
        as_of=day,
        tweets=tweets,
    )
    user_tweet = qualified(
        user_tweet_features(
            day_examples.select("user_id", "tweet_id", "author_id").distinct(),
            representations.simclusters_interested_in,
            sc_tweets,
            representations.twhin_user_embeddings,
            representations.twhin_tweet_embeddings,
            as_of=day,
            tweets=tweets,
            engagements=engagements,
            follows=follows,
            config=config,
        ),
        "user_tweet_features",
        "user_tweet",
    )
    return (
        day_examples.join(user, on="user_id", how="left")
        .join(author, on="author_id", how="left")
        .join(user_author, on=["user_id", "author_id"], how="left")
        .join(user_tweet, on=["user_id", "tweet_id"], how="left")
    )


def _tweet_features_at_impressions(
    examples: DataFrame, tweets: DataFrame, engagements: DataFrame, *, window: TrainingWindow
) -> DataFrame:
    """`examples` plus the tweet features as of each impression, named `tweet__<name>`. The author's
    follower count and verification come from the snapshot's author features."""
    longest = max(hours for _, hours in TWEET_ENGAGEMENT_COUNTS.values())
    relevant = engagements.where(
        (F.col("created_at") >= F.lit(window.start - timedelta(hours=longest)))
        & (F.col("created_at") < F.lit(window.end))
    ).join(examples.select("tweet_id").distinct(), on="tweet_id", how="left_semi")
    counted = tweet_counts_before(examples, relevant, counts=TWEET_ENGAGEMENT_COUNTS)
    content = tweets.select("tweet_id", F.col("created_at").alias("_tweet_created_at"), *tweet_content_columns())
    age_hours = (F.col("impression_time").cast("double") - F.col("_tweet_created_at").cast("double")) / 3600.0
    with_content = counted.join(content, on="tweet_id", how="left").select(
        "*",
        age_hours.alias("age_hours"),
        like_rate_24h(),
        F.col("author__follower_count").alias("author_follower_count"),
        F.col("author__is_verified").alias("author_is_verified"),
    )
    return with_content.select(
        *examples.columns, *[F.col(f.name).alias(f.qualified_name) for f in features_for("tweet")]
    )


def training_examples(
    users: DataFrame,
    follows: DataFrame,
    mutual_follows: DataFrame,
    tweets: DataFrame,
    engagements: DataFrame,
    social_actions: DataFrame,
    representations: Representations | Mapping[datetime, Representations],
    *,
    window: TrainingWindow,
    label_config: LabelConfig = LabelConfig(),
    feature_config: FeatureConfig = DEFAULT_CONFIG,
) -> DataFrame:
    """(EXAMPLE_KEYS, HEADS, every registered feature as `<entity>__<name>` in registry order),
    one row per impression in the window; see the module docstring for what each feature may read.

    `representations`: one build for the whole window, or one per snapshot day (`snapshot_days`),
    each built no later than the first impression that uses it."""
    days = snapshot_days(window.start, window.end)
    per_day_representations = representations_per_day(representations, days=days, window=window)
    labelled = impression_labels(engagements, tweets, start=window.start, end=window.end, config=label_config)
    examples = time_split(
        labelled.withColumn("snapshot_time", _snapshot_of("impression_time")),
        validation_start=window.validation_start,
        test_start=window.test_start,
    ).select(*EXAMPLE_KEYS, *HEADS)
    inputs = dict(
        users=users,
        follows=follows,
        mutual_follows=mutual_follows,
        tweets=tweets,
        engagements=engagements,
        social_actions=social_actions,
    )
    per_day = [
        _day_features(
            examples.where(F.col("snapshot_time") == F.lit(day)),
            day,
            **inputs,
            representations=per_day_representations[day],
            config=feature_config,
        )
        for day in days
    ]
    joined = reduce(lambda a, b: a.unionByName(b), per_day)
    with_tweet = _tweet_features_at_impressions(joined, tweets, engagements, window=window)
    return with_tweet.select(
        *EXAMPLE_KEYS,
        *[F.col(label).cast("int").alias(label) for label in HEADS],
        *[with_default(feature) for feature in FEATURES],
    )
