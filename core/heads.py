"""The heavy ranker's heads: one predicted probability per engagement the timeline is scored on,
after Home Mixer's heavy ranker. Each head is a training label (`features.labels`), a model output
(`models.heavy_ranker`), a `p_<head>` column of `ranked_feeds` and of a published feed item, and a
column of the explain page.
"""

HEADS: tuple[str, ...] = (
    "like",
    "retweet",
    "reply",
    "good_click",
    "good_profile_click",
    "video_playback50",
    "reply_engaged_by_author",
    "negative_feedback",
    "report",
)


def head_column(head: str) -> str:
    """The column of a head's probability in ranked_feeds and in a published feed item."""
    return f"p_{head}"


HEAD_COLUMNS: tuple[str, ...] = tuple(head_column(head) for head in HEADS)
