"""Bearer tokens and opaque cursors, both HMAC-SHA256 signed with the one `HOMEFEED_SECRET`.

A token is `hf1.<user_id>.<expires epoch seconds>.<role>.<signature>`: it names the viewer, so a
viewer reads only their own home timelines. A cursor is an opaque base64url string holding a
msgpack payload and its signature; a client cannot forge or alter one (a tampered cursor is a 400).
Each kind of signed thing is signed under its own purpose, so a cursor cannot pass as a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import msgpack

TOKEN_VERSION = "hf1"
ROLES = ("user", "admin")
DEFAULT_TOKEN_SECONDS = 30 * 24 * 3600
_SIGNATURE_BYTES = 16


class InvalidToken(ValueError):
    pass


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Viewer:
    user_id: int
    is_admin: bool = False


def _signature(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(
    user_id: int, secret: str, *, now: float, ttl_seconds: int = DEFAULT_TOKEN_SECONDS, admin: bool = False
) -> str:
    payload = f"{TOKEN_VERSION}.{int(user_id)}.{int(now) + ttl_seconds}.{ROLES[admin]}"
    return f"{payload}.{_b64(_signature(secret, 'token', payload.encode()))}"


def verify_token(token: str, secret: str, *, now: float) -> Viewer:
    """The viewer a token names; InvalidToken says why it is refused."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != TOKEN_VERSION:
        raise InvalidToken("malformed token")
    payload, signature = ".".join(parts[:4]), parts[4]
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None
    if not hmac.compare_digest(given, _signature(secret, "token", payload.encode())):
        raise InvalidToken("bad token signature")
    _, user, expires, role = parts[:4]
    if not (user.isdigit() and expires.isdigit()) or role not in ROLES:
        raise InvalidToken("malformed token")
    if int(expires) <= now:
        raise InvalidToken("token expired")
    return Viewer(user_id=int(user), is_admin=role == "admin")


def encode_cursor(state: dict, secret: str) -> str:
    """An opaque cursor for `state` (msgpack-able), signed. Not compressed: its bulk is tweet ids,
    which deflate barely shrinks, and each deflate call maps and faults in 256 KiB of state."""
    payload = msgpack.packb(state, use_bin_type=True)
    return _b64(_signature(secret, "cursor", payload) + payload)


def decode_cursor(cursor: str, secret: str, *, max_length: int = 8192) -> dict:
    if len(cursor) > max_length:
        raise InvalidCursor("cursor too long")
    try:
        raw = _unb64(cursor)
    except (binascii.Error, ValueError):
        raise InvalidCursor("malformed cursor") from None
    signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
    if len(signature) < _SIGNATURE_BYTES or not hmac.compare_digest(signature, _signature(secret, "cursor", payload)):
        raise InvalidCursor("cursor signature does not match (altered or from another deployment)")
    state = msgpack.unpackb(payload, raw=False)
    if not isinstance(state, dict):
        raise InvalidCursor("malformed cursor")
    return state
