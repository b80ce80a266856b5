"""Error text fit for a terminal or the Dagster UI; imports nothing heavy, so that the CLI's
last-resort handler can use it whatever failed to import."""

from __future__ import annotations

import re

_JVM_FRAME = re.compile(r"^\s+(at [\w$.<>/-]+\(.*\)|\.\.\. \d+ more)$")


def without_jvm_frames(message: str) -> str:
    """A Spark error's message (Py4JJavaError) carries the JVM's whole stack traces, hundreds of
    `at ...` lines that bury its exception and `Caused by:` lines; those say what went wrong."""
    return "\n".join(line for line in message.splitlines() if not _JVM_FRAME.match(line))
