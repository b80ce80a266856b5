"""What the API accepts of a request: the bounds its parameters are validated against (by FastAPI,
and by the home timeline fast path, `serving.fast_path`, which must accept exactly as much)."""

MAX_COUNT = 100
DEFAULT_COUNT = 35
MAX_CURSOR_LENGTH = 8192
MAX_BODY_BYTES = 256 * 1024
MAX_ID = 2**63 - 1
REDIS_TIMEOUT_SECONDS = 2.0
