"""The timeline pages the routes serve, as JSON responses: keyword-only functions of the app's
`ServingState`, shared by the FastAPI routes and the home timeline fast path.

For You (`for_you_page`) runs `serving.for_you`'s pipeline; Following and lists (`following_page`,
`list_page`) `serving.timelines`' chronological one. A For You or Following page is kept in the
recent pages (`serving.page_cache`) under everything it was computed from and served again while
that holds; each page served counts as a timeline, with what its filters removed.
"""

from __future__ import annotations

import msgpack
import orjson
from fastapi.responses import Response

from core import redis_layout as rl
from core.filters import CHRONOLOGICAL_FILTERS, REQUEST_FILTERS
from serving.auth import InvalidCursor, Viewer, decode_cursor, encode_cursor
from serving.errors import Forbidden, NotFound
from serving.explain import explain_page
from serving.for_you import FAILURES, ForYouResult, for_you_timeline, fresh_tweets
from serving.limits import MAX_CURSOR_LENGTH
from serving.mixing import Entry
from serving.page_cache import CachedPage
from serving.rendering import render
from serving.state import ServingState
from serving.store import UserState, built_at_ms, version_of
from serving.timelines import (
    Published,
    author_timelines,
    chronological_candidates,
    chronological_page,
    list_timeline,
    older_than,
)


def own_timeline(user_id: int, viewer: Viewer, *, admin_too: bool = False) -> None:
    """A viewer reads only their own home timelines (an admin too, where `admin_too`)."""
    if viewer.user_id != user_id and not (admin_too and viewer.is_admin):
        raise Forbidden("a viewer reads only their own home timelines")


def cursor_state(serving: ServingState, cursor: str | None, *, kind: str, owner: int) -> dict:
    """What a cursor of the `kind` timeline of `owner` carries ({} for none)."""
    if cursor is None:
        return {}
    try:
        state = decode_cursor(cursor, serving.secret, max_length=MAX_CURSOR_LENGTH)
    except (InvalidCursor, ValueError, msgpack.exceptions.ExtraData) as error:
        raise InvalidCursor(str(error)) from None
    if state.get("k") != kind or state.get("o") != owner:
        raise InvalidCursor("it belongs to another timeline")
    return state


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def current_version(serving: ServingState) -> tuple[int, float]:
    """(the published version, its build time in epoch ms), both from one read of the pointer."""
    pointer = await serving.store.pointer()
    return version_of(pointer), built_at_ms(pointer or {})


def served_again(serving: ServingState, pipeline: str, key: tuple | None) -> CachedPage | None:
    """The page kept for `key` (None: not to be looked up), counted as a timeline served."""
    cached = serving.pages.get(key) if key else None
    serving.metrics.inc(serving.metrics.page_cache, pipeline, "hit" if cached else "miss")
    if cached:
        serving.metrics.timeline_served(pipeline, cached.filtered, cached.fallback_reason)
    return cached


async def for_you_state(serving: ServingState, user_id: int) -> tuple[int, float, UserState]:
    version, built_ms = await current_version(serving)
    with serving.metrics.timed("for_you", "source"):
        state = await serving.store.user_state(version, user_id, posted_since_ms=built_ms)
    return version, built_ms, state


async def run_for_you(
    serving: ServingState,
    version: int,
    built_ms: float,
    state: UserState,
    previous: dict,
    count: int,
    *,
    explain: bool = False,
    fresh: list[tuple[int, int, float]] | None = None,
) -> ForYouResult:
    metrics = serving.metrics
    result = await for_you_timeline(
        serving.store,
        version,
        state,
        cursor=previous,
        count=count,
        now_ms=serving.clock() * 1000,
        built_ms=built_ms,
        config=serving.config,
        mark_shown=not explain,
        with_probabilities=explain,
        fresh=fresh,
        timed=lambda stage: metrics.timed("for_you", stage),
    )
    for source in result.failed_sources:
        metrics.inc(metrics.source_failures, "for_you", source)
    return result


async def for_you_page(
    serving: ServingState, *, user_id: int, cursor: str | None, previous: dict, count: int
) -> Response:
    """A page of the viewer's For You timeline after the one `previous` (the cursor's state)."""
    version, built_ms, state = await for_you_state(serving, user_id)
    key, fresh = None, None
    if serving.pages.enabled:
        try:
            fresh = await fresh_tweets(serving.store, state, built_ms, serving.config)
            key = ("for_you", version, user_id, cursor, count, state.fingerprint, tuple(fresh))
        except FAILURES:  # the pipeline reads them again, fails open and counts it
            pass
        cached = served_again(serving, "for_you", key)
        if cached:
            if cached.shows_who_to_follow:  # shown once more: marked once more (failing open, as in the pipeline)
                await _mark_who_to_follow_shown(serving, user_id)
            return json_response(cached.body)
    result = await run_for_you(serving, version, built_ms, state, previous, count, fresh=fresh)
    filtered = {name: len(result.removed.get(name, ())) for name in REQUEST_FILTERS}
    serving.metrics.timeline_served("for_you", filtered, result.fallback_reason)
    with serving.metrics.timed("for_you", "render"):
        items = await render(
            serving.store, serving.rendered, version, result.entries, scored=result.fallback_reason is None
        )
    next_cursor = None
    if result.next_state is not None:
        next_cursor = encode_cursor({"k": "for_you", "o": user_id, **result.next_state}, serving.secret)
    body = orjson.dumps(
        {
            "version": version,
            "items": items,
            "next_cursor": next_cursor,
            "fallback": result.fallback_reason is not None,
            "filtered": filtered,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if key and not result.failed_sources and result.fallback_reason != "source_failed":
        serving.pages.put(
            key,
            CachedPage(
                body,
                filtered,
                result.fallback_reason,
                shows_who_to_follow=any(e.type == "who_to_follow" for e in result.entries),
            ),
        )
    return json_response(body)


async def _mark_who_to_follow_shown(serving: ServingState, user_id: int) -> None:
    mixing = serving.config.mixing
    try:
        await serving.store.mark_who_to_follow_shown(
            user_id, serving.clock() * 1000, ttl_seconds=int(mixing.who_to_follow_interval_hours * 3600)
        )
    except FAILURES:
        serving.metrics.inc(serving.metrics.source_failures, "for_you", "who_to_follow")


async def following_page(serving: ServingState, *, user_id: int, cursor: str | None, before, count: int) -> Response:
    """A page of the tweets of the accounts the viewer follows, newest first, older than `before`."""
    store = serving.store
    version, built_ms = await current_version(serving)
    with serving.metrics.timed("following", "source"):
        state = await store.user_state(version, user_id, with_feed=False, posted_since_ms=built_ms)
        followees = sorted(state.following)
        key, fresh = None, None
        if serving.pages.enabled:
            fresh = await store.new_tweets_of(followees, since_ms=built_ms, posted_since=state.posted_since)
            key = ("following", version, user_id, cursor, count, state.fingerprint, tuple(fresh))
            cached = served_again(serving, "following", key)
            if cached:
                return json_response(cached.body)
        published = await store.records(rl.AUTHOR_TWEETS, version, followees)
    return await _chronological(
        serving,
        "following",
        user_id,
        version,
        built_ms,
        followees,
        author_timelines(published),
        state,
        before,
        count,
        fresh=fresh,
        key=key,
    )


async def list_page(serving: ServingState, *, viewer: Viewer, list_id: int, before, count: int) -> Response:
    """A page of the list members' tweets, newest first; a private list only for its owner and members."""
    store = serving.store
    version, built_ms = await current_version(serving)
    with serving.metrics.timed("list", "source"):
        lists = await store.records(rl.LISTS, version, [list_id])
        if list_id not in lists:
            raise NotFound(f"no list {list_id}")
        record = lists[list_id]
        if record["is_private"] and viewer.user_id != record["owner_id"] and viewer.user_id not in record["member_ids"]:
            raise Forbidden("a private list is visible to its owner and members only")
        timeline = (await store.records(rl.LIST_TIMELINES, version, [list_id])).get(list_id)
        state = await store.user_state(version, viewer.user_id, with_feed=False)
    return await _chronological(
        serving,
        "list",
        list_id,
        version,
        built_ms,
        list(record["member_ids"]),
        list_timeline(timeline),
        state,
        before,
        count,
    )


async def _chronological(
    serving: ServingState,
    pipeline: str,
    owner: int,
    version: int,
    built_ms: float,
    authors: list[int],
    published: Published,
    state: UserState,
    before,
    count: int,
    *,
    fresh: list[tuple[int, int, float]] | None = None,
    key: tuple | None = None,
) -> Response:
    """A page of `authors`' tweets, newest first (`fresh`: their tweets since the build at
    `built_ms`, when already read); kept for `key` when one is given."""
    store = serving.store
    candidates = await chronological_candidates(
        store, authors, published=published, since_ms=built_ms, posted_since=state.posted_since, fresh=fresh
    )
    with serving.metrics.timed(pipeline, "hydrate"):
        page, removed = await chronological_page(
            store, version, older_than(candidates, before), count, state=state, slack=serving.config.metadata_slack
        )
    filtered = {name: len(removed.get(name, ())) for name in CHRONOLOGICAL_FILTERS}
    serving.metrics.timeline_served(pipeline, filtered)
    items = await render(store, serving.rendered, version, [Entry("tweet", [item]) for item in page], scored=False)
    next_cursor = None
    if len(page) == count:
        last = page[-1][0]
        next_cursor = encode_cursor(
            {"k": pipeline, "o": owner, "b": [last.created_at_ms, last.tweet_id]}, serving.secret
        )
    body = orjson.dumps({"version": version, "items": items, "next_cursor": next_cursor, "filtered": filtered})
    if key:
        serving.pages.put(key, CachedPage(body, filtered))
    return json_response(body)


async def explained_page(serving: ServingState, *, user_id: int, count: int) -> str:
    """The explain page (HTML) of the user's first For You page, which marks nothing shown."""
    version, built_ms, state = await for_you_state(serving, user_id)
    result = await run_for_you(serving, version, built_ms, state, {}, count, explain=True)
    items = await render(
        serving.store, serving.rendered, version, result.entries, scored=result.fallback_reason is None
    )
    profiles = await serving.store.records(rl.PROFILES, version, [user_id])
    return explain_page(
        user_id=user_id, version=version, result=result, items=items, handle=profiles.get(user_id, {}).get("handle")
    )
