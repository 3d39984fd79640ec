"""Backing up and restoring the SQLite store, consistently, while the hub writes.

A copy with ``cp`` can miss what is still in the write-ahead log, or be torn
mid-write.  SQLite's online backup API copies one consistent snapshot instead:
it runs in a single step (``pages=-1``), so it reads inside one transaction
and, the store being in WAL mode, writers go on meanwhile (an incremental
backup would start over every time a writer changed the file, which under
steady ingest may be forever).  The copy is written beside the target, checked
with ``PRAGMA integrity_check`` and only then renamed into place, so a backup
that failed never leaves a file that looks like one.

A restore goes into a *fresh* store only: a store that holds events is
refused, because merging two histories has no meaning and overwriting one
under a running hub would corrupt it.  The restored store gets a new epoch
(ids of the backup's epoch stop resuming silently: clients holding ids newer
than the backup would otherwise resume from a point the restored store will
hand out again for different events).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.store import BackupError


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a SQLite store file holds: enough to tell a user what a backup contains."""

    path: str
    events: int
    last_seq: int
    epoch: int
    bytes: int


@contextlib.contextmanager
def _connect(path: str | Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    uri = f"file:{Path(path).resolve()}" + ("?mode=ro" if read_only else "")
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {str(path)!r}: {exc}") from None
    try:
        yield db
    finally:
        db.close()


def describe(path: str | Path) -> Snapshot:
    """Check ``path`` is a sound hub store and say what it holds.

    Raises:
        BackupError: the file is missing, not SQLite, damaged, or not a hub store.
    """
    if not Path(path).is_file():
        raise BackupError(f"{str(path)!r} does not exist")
    with _connect(path, read_only=True) as db:
        try:
            verdict = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                raise BackupError(f"{str(path)!r} is damaged: {'; '.join(verdict[:5])}")
            epoch = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            count, top = db.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{str(path)!r} is not a hub store: {exc}") from None
    if epoch is None:
        raise BackupError(f"{str(path)!r} is not a hub store: it has no epoch")
    return Snapshot(str(path), int(count), int(top), int(epoch[0]), Path(path).stat().st_size)


def backup(store_path: str, target: Path, *, overwrite: bool = False) -> Snapshot:
    """Copy the store at ``store_path`` to ``target`` as one consistent snapshot.

    Raises:
        BackupError: the store cannot be read, ``target`` exists (without
            ``overwrite``) or cannot be written, or the copy fails its check.
    """
    if not Path(store_path).is_file():
        raise BackupError(f"HUB_STORE_URL names {store_path!r}, which does not exist")
    if target.exists() and not overwrite:
        raise BackupError(f"{str(target)!r} exists: name another file, or give --overwrite")
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        with _connect(store_path) as source, _connect(partial) as copy:
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        snapshot = describe(partial)
        _fsync(partial)
        partial.replace(target)
        _fsync(target.parent)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot write {str(target)!r}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return dataclasses.replace(snapshot, path=str(target))


def restore(source: Path, store_path: str) -> Snapshot:
    """Copy the backup ``source`` into the fresh store at ``store_path``, with a new epoch.

    Raises:
        BackupError: ``source`` is no sound hub store, or the target holds events.
    """
    backup_snapshot = describe(source)
    held = _events_held(store_path)
    if held:
        raise BackupError(
            f"the store at {store_path!r} holds {held} events: restore into a fresh store "
            f"(stop the hub, move {store_path!r} and its -wal and -shm files away, or point "
            "HUB_STORE_URL elsewhere)"
        )
    epoch = max(time.time_ns() // 1_000_000, backup_snapshot.epoch + 1)
    try:
        Path(store_path).parent.mkdir(parents=True, exist_ok=True)
        with _connect(source, read_only=True) as backup_db, _connect(store_path) as target:
            backup_db.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=WAL")
            target.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (str(epoch),))
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot restore into {store_path!r}: {exc}") from None
    return describe(store_path)


def integrity_problems(store_path: str) -> list[str]:
    """What ``PRAGMA integrity_check`` and ``foreign_key_check`` find wrong (empty: none)."""
    with _connect(store_path, read_only=True) as db:
        try:
            found = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
            found += [f"foreign key: {row}" for row in db.execute("PRAGMA foreign_key_check")]
        except sqlite3.DatabaseError as exc:
            return [f"{store_path}: {exc}"]
    return found


def _events_held(store_path: str) -> int:
    if not Path(store_path).exists():
        return 0
    with _connect(store_path, read_only=True) as db:
        try:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:  # no events table: an empty file
            return 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
