"""What `homefeed setup` makes sure of: Java 17+, the Delta jars in the cache, a redis-server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_JAVA_MAJOR = 17


class SetupError(RuntimeError):
    pass


def parse_java_major(version_output: str) -> int | None:
    """The major version from `java -version` output ('openjdk version "17.0.15"' -> 17, '1.8.0' -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def check_java() -> int:
    java = shutil.which("java")
    if java is None:
        raise SetupError(
            f"no `java` on PATH: Spark needs Java {MIN_JAVA_MAJOR}+ (Debian: apt-get install openjdk-17-jre-headless)"
        )
    output = subprocess.run([java, "-version"], capture_output=True, text=True)
    major = parse_java_major(output.stderr + output.stdout)
    if major is None or major < MIN_JAVA_MAJOR:
        raise SetupError(f"Spark needs Java {MIN_JAVA_MAJOR}+, found: {output.stderr.strip()}")
    return major


def find_binary(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return Path(found)
    return None


def ensure_debian_binary(names: tuple[str, ...], package: str, *, purpose: str) -> Path:
    """The first of `names` on PATH, installing Debian's `package` when none is and running as root."""
    found = find_binary(*names)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError(
            f"no `{names[0]}` binary found ({purpose}). Install it as root with "
            f"`apt-get install {package}` (Debian/Ubuntu) or put one on PATH."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SetupError(f"`{' '.join(command)}` failed:\n{result.stderr[-2000:]}")
    found = find_binary(*names)
    if not found:
        raise SetupError(f"apt-get installed {package} but no {names[0]} binary was found")
    return found


def find_redis_server() -> Path | None:
    return find_binary("redis-server")


def ensure_redis_server() -> Path:
    """Find redis-server, installing Debian's package when missing and running as root."""
    if find_redis_server():
        return find_redis_server()
    found = ensure_debian_binary(("redis-server",), "redis-server", purpose="feeds are published to Redis")
    # The package starts a system-wide server on 6379; the project starts its own where it needs one.
    subprocess.run(["service", "redis-server", "stop"], capture_output=True)
    return found


def ensure_chromium() -> Path:
    """Headless Chromium for the explain page's browser test (Debian's `chromium`)."""
    return ensure_debian_binary(
        ("chromium", "chromium-browser"), "chromium", purpose="the tests render the explain page in a headless browser"
    )
