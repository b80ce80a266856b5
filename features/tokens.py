"""A tweet's words: what the content features (`features.tables`) and the topic classifier
(`features.topics`) read of its text."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.pair_kernel import TWEET_TOKENS


def tweet_token_lists(tweets: DataFrame) -> DataFrame:
    """(tweet_id, _tokens): the distinct lower-cased words and hashtags of each tweet's text, @mentions
    left out (they name accounts, not content); tweets without text have no row. No shuffle: a
    tweet's tokens come from its own row (tweets are unique by tweet_id after ingestion)."""
    words = F.split(F.trim(F.lower(F.regexp_replace(F.col("text"), "@\\S+", " "))), "\\s+")
    return tweets.where(F.col("text").isNotNull()).select(
        "tweet_id", F.array_distinct(F.array_remove(words, "")).alias(TWEET_TOKENS)
    )


def tweet_tokens(tweets: DataFrame) -> DataFrame:
    """(tweet_id, token): `tweet_token_lists` one row per token."""
    return one_row_per_token(tweet_token_lists(tweets))


def one_row_per_token(token_lists: DataFrame) -> DataFrame:
    return token_lists.select("tweet_id", F.explode(TWEET_TOKENS).alias("token"))
