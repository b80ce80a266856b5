"""Internal arrays (user/tweet rows) -> contract tables (ids, strings, timestamps)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from core.contract import ENGAGEMENT_ACTIONS, SOCIAL_ACTIONS
from jobs.synthetic.engagements import EngagementRows
from jobs.synthetic.graph import Follows
from jobs.synthetic.social import Lists, SocialActions
from jobs.synthetic.tweets import Tweets
from jobs.synthetic.users import LANGS, Users
from jobs.synthetic.writer import codes_to_strings, opt_int64, opt_ts, raw_table, ts


def users_table(users: Users, handles: pa.Array) -> pa.Table:
    return raw_table(
        "users",
        {
            "user_id": pa.array(users.ids),
            "handle": handles,
            "created_at": ts(users.created_us),
            "is_verified": pa.array(users.is_verified),
            "allow_nsfw": pa.array(users.allow_nsfw),
            "lang": codes_to_strings(LANGS, users.lang),
        },
    )


def follows_table(users: Users, f: Follows, lo: int, hi: int) -> pa.Table:
    return raw_table(
        "follows",
        {
            "follower_id": pa.array(users.ids[f.follower[lo:hi]]),
            "followee_id": pa.array(users.ids[f.followee[lo:hi]]),
            "created_at": ts(f.created_us[lo:hi]),
        },
    )


def _tweet_ref(tw: Tweets, rows: np.ndarray) -> pa.Array:
    return opt_int64(np.where(rows >= 0, tw.ids[np.maximum(rows, 0)], -1))


def tweets_table(users: Users, tw: Tweets, lo: int, hi: int) -> pa.Table:
    s = slice(lo, hi)
    return raw_table(
        "tweets",
        {
            "tweet_id": pa.array(tw.ids[s]),
            "author_id": pa.array(users.ids[tw.author[s]]),
            "created_at": ts(tw.created_us[s]),
            "text": tw.text.slice(lo, hi - lo),
            "in_reply_to_tweet_id": _tweet_ref(tw, tw.reply_to[s]),
            "quoted_tweet_id": _tweet_ref(tw, tw.quoted[s]),
            "retweet_of_tweet_id": _tweet_ref(tw, tw.retweet_of[s]),
            "has_media": pa.array(tw.has_media[s]),
            "has_video": pa.array(tw.has_video[s]),
            "is_nsfw": pa.array(tw.is_nsfw[s]),
            "lang": codes_to_strings(LANGS, tw.lang[s]),
            "deleted_at": opt_ts(tw.deleted_us[s]),
        },
    )


def engagements_table(users: Users, tw: Tweets, e: EngagementRows) -> pa.Table:
    d = e.dwell_ms.astype(np.int32)
    return raw_table(
        "engagements",
        {
            "user_id": pa.array(users.ids[e.user]),
            "tweet_id": pa.array(tw.ids[e.tweet]),
            "action": codes_to_strings(ENGAGEMENT_ACTIONS, e.action),
            "created_at": ts(e.t_us),
            "dwell_ms": pa.array(d, type=pa.int32(), mask=d < 0),
        },
    )


def social_actions_table(users: Users, s: SocialActions) -> pa.Table:
    return raw_table(
        "social_actions",
        {
            "user_id": pa.array(users.ids[s.user]),
            "target_user_id": pa.array(users.ids[s.target]),
            "action": codes_to_strings(SOCIAL_ACTIONS, s.action),
            "created_at": ts(s.created_us),
        },
    )


def list_ids(lists: Lists, rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64) + 1


def lists_table(users: Users, lists: Lists) -> pa.Table:
    return raw_table(
        "lists",
        {
            "list_id": pa.array(list_ids(lists, np.arange(len(lists.owner)))),
            "owner_id": pa.array(users.ids[lists.owner]),
            "name": lists.name,
            "is_private": pa.array(lists.is_private),
            "created_at": ts(lists.created_us),
        },
    )


def list_members_table(users: Users, lists: Lists) -> pa.Table:
    return raw_table(
        "list_members",
        {
            "list_id": pa.array(list_ids(lists, lists.member_list)),
            "user_id": pa.array(users.ids[lists.member_user]),
            "added_at": ts(lists.member_added_us),
        },
    )
