"""The API's response models (the OpenAPI schema; the timeline routes render plain dicts of these
shapes, which the schema tests check) and the error responses each route declares."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class Author(BaseModel):
    user_id: str
    handle: str | None
    is_verified: bool


class TweetItem(BaseModel):
    """A tweet: `tweet` when ranked or chronological, `promoted` in an ad slot."""

    type: Literal["tweet", "promoted"] = "tweet"
    tweet_id: str
    author: Author
    text: str | None
    created_at: str
    in_reply_to_tweet_id: str | None
    quoted_tweet_id: str | None
    retweet_of_tweet_id: str | None
    has_media: bool
    in_network: bool
    score: float | None
    sources: list[str]
    social_context: str | None


class ConversationModule(BaseModel):
    """A ranked reply below its ancestors, root first (the reply is the last tweet)."""

    type: Literal["conversation"]
    tweets: list[TweetItem]


class SuggestedUser(BaseModel):
    user_id: str
    handle: str | None
    is_verified: bool
    social_proof_count: int
    followed_by: list[str]  # handles of accounts the viewer follows that follow this one


class WhoToFollowModule(BaseModel):
    type: Literal["who_to_follow"]
    users: list[SuggestedUser]


TimelineEntry = Annotated[TweetItem | ConversationModule | WhoToFollowModule, Field(discriminator="type")]


class Timeline(BaseModel):
    version: int
    items: list[TimelineEntry]
    next_cursor: str | None
    fallback: bool = False
    filtered: dict[str, int]


class ChronologicalTimeline(BaseModel):
    version: int
    items: list[TweetItem]
    next_cursor: str | None
    filtered: dict[str, int]


class EventsAccepted(BaseModel):
    accepted: int
    log_ids: list[str]


class ErrorBody(BaseModel):
    detail: str


_MEANING = {
    400: "invalid cursor, or a malformed HTTP request (refused by the server)",
    401: "no, bad or expired bearer token",
    403: "not the viewer's to read",
    404: "not found",
    409: "conflict",
    413: "request body too large",
    503: "Redis unavailable or no published version",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI responses for the error statuses a route can answer (the body is `{"detail": ...}`)."""
    responses = {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}
    if 400 in responses:  # uvicorn answers a request it cannot parse in plain text, before the app
        responses[400]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return responses
