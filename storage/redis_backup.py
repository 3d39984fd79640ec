"""Backing up a Redis store: Redis's own snapshot, fetched with ``redis-cli --rdb``.

The hub does not copy keys one by one: Redis makes a consistent point-in-time
snapshot itself (an RDB, as ``BGSAVE`` writes) and ``redis-cli --rdb`` streams
it over the connection, so the backup works whether or not the hub's host can
read Redis's data directory.  The password goes to ``redis-cli`` through
``REDISCLI_AUTH``, never on its command line where ``ps`` would show it.

An RDB holds the whole Redis database server (every key of every prefix);
restoring it is Redis's job, done with the server stopped
(docs/OPERATIONS.md, "Redis").  What the hub can check is that the file is an
RDB and how large it is, and warn about settings that lose acknowledged
events (no ``appendonly``, an evicting ``maxmemory-policy``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from storage.store import BackupError
from storage.url import StoreURL, redacted

#: An RDB file starts with these bytes (then a four-digit format version).
RDB_MAGIC = b"REDIS"
#: How long ``redis-cli --rdb`` may take before the backup is given up.
RDB_TIMEOUT_SECONDS = 3600.0


def backup(url: StoreURL, target: Path, *, overwrite: bool = False) -> int:
    """Fetch the Redis server's snapshot into ``target``; returns its size in bytes.

    Raises:
        BackupError: ``redis-cli`` is missing, ``target`` exists (without
            ``overwrite``), or Redis refused or sent something that is no RDB.
    """
    program = shutil.which("redis-cli")
    if program is None:
        raise BackupError(
            "redis-cli is not installed (Debian: apt-get install redis-tools); or run "
            "BGSAVE on the Redis server and copy its dump.rdb once LASTSAVE changes"
        )
    if target.exists() and not overwrite:
        raise BackupError(f"{str(target)!r} exists: name another file, or give --overwrite")
    parts = urlsplit(url.redis_url)
    command = [program, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    if parts.scheme == "rediss":
        command.append("--tls")
    if parts.username:
        command += ["--user", unquote(parts.username)]
    env = {key: value for key, value in os.environ.items() if key != "REDISCLI_AUTH"}
    if parts.password:
        env["REDISCLI_AUTH"] = unquote(parts.password)
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(  # noqa: S603 - a fixed program, arguments from the store URL
            [*command, "--rdb", str(partial)],
            env=env,
            capture_output=True,
            text=True,
            timeout=RDB_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise BackupError(
                f"redis-cli --rdb from {redacted(url.raw)!r} failed: "
                + (said[-1] if said else f"exit {done.returncode}")
            )
        with partial.open("rb") as rdb:
            if rdb.read(len(RDB_MAGIC)) != RDB_MAGIC:
                raise BackupError(f"{redacted(url.raw)!r} sent something that is not an RDB")
        partial.replace(target)
    except subprocess.TimeoutExpired:
        raise BackupError(f"redis-cli --rdb took over {RDB_TIMEOUT_SECONDS:.0f} s") from None
    except OSError as exc:
        raise BackupError(f"cannot write {str(target)!r}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def persistence_warnings(url: StoreURL) -> list[str]:
    """Settings of the Redis server that can lose acknowledged events (empty: none).

    ``CONFIG`` may be renamed away on managed Redis; then nothing can be told.
    """
    client = redis.Redis.from_url(url.redis_url, socket_timeout=10)
    try:
        config = client.config_get("appendonly")
        config.update(client.config_get("maxmemory-policy"))
    except redis.ResponseError:
        return ["CONFIG is not allowed on this Redis: check appendonly and maxmemory-policy"]
    finally:
        client.close()
    found = []
    if config.get("appendonly") != "yes":
        found.append(
            "appendonly is off: events acknowledged since the last snapshot are lost if "
            "Redis stops (docs/SCALING.md, Redis persistence)"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        found.append(
            f"maxmemory-policy is {config['maxmemory-policy']}: Redis may evict stored "
            "events when memory runs short; use noeviction"
        )
    return found
