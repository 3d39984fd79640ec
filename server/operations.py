"""Operator commands: ``flask --app server.operations hub backup | restore | prune | check``.

A Flask CLI group, as Flask users expect, on an app of its own: loading
``server.app`` would start what a serving process runs (the fan-out, the
pruning loop, the alert sender), and a backup must not also send alerts.
The commands read the same ``HUB_*`` settings as the hub and open the store
``HUB_STORE_URL`` names; they run beside a serving hub (``backup``, ``prune``,
``check``) or before it starts (``restore``).  Exit status: 0 done, 1 the
command failed or ``check`` found problems, 2 a usage or settings mistake.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup

from app.config import ConfigError, Settings
from app.validation import load_settings
from ledger.ids import make_event_id
from ledger.retention import Retention
from storage import consistency, redis_backup, sqlite_backup
from storage.factory import create_store
from storage.store import BackupError, Store, StoreUnavailable

hub = AppGroup("hub", help="Back up, restore, prune and check the hub's store (HUB_STORE_URL).")

#: ``check`` compares at most this many deployments' views unless told otherwise.
CHECK_DEPLOYMENTS = 1_000_000


def create_app() -> Flask:
    """An app that only carries the operator commands (no hub, no store opened)."""
    app = Flask(__name__)
    app.cli.add_command(hub)
    return app


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"hub configuration error: {problem}", err=True)
        sys.exit(2)


@contextmanager
def _failures() -> Iterator[None]:
    """A store that fails or refuses becomes one line and exit status 1, not a traceback."""
    try:
        yield
    except (BackupError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _store(settings: Settings, retention: Retention | None = None) -> Iterator[Store]:
    store = create_store(
        settings.store,
        synchronous=settings.sqlite_synchronous,
        retention=retention or Retention(settings.retention_days, settings.retention_max_events),
    )
    try:
        yield store
    finally:
        store.close()


def _size(count: int) -> str:
    return f"{count / 1048576:.1f} MiB" if count >= 1048576 else f"{count / 1024:.1f} KiB"


def _no_memory(settings: Settings, what: str) -> None:
    if settings.store.kind == "memory":
        raise click.ClickException(f"HUB_STORE_URL=memory:// keeps nothing to {what}")


@hub.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace PATH if it exists.")
def backup(path: Path, overwrite: bool) -> None:
    """Write a consistent copy of the store to PATH while the hub runs.

    SQLite: SQLite's online backup, checked with PRAGMA integrity_check.
    Redis: the server's RDB snapshot, fetched with redis-cli --rdb.
    """
    settings = _settings()
    _no_memory(settings, "back up")
    with _failures():
        if settings.store.kind == "redis":
            with _store(settings) as store:
                top = make_event_id(store.epoch, store.last_seq())
            size = redis_backup.backup(settings.store, path, overwrite=overwrite)
            click.echo(f"backed up Redis (events up to {top} at least) to {path} ({_size(size)})")
            return
        snapshot = sqlite_backup.backup(settings.store.path, path, overwrite=overwrite)
    top = make_event_id(snapshot.epoch, snapshot.last_seq)
    click.echo(
        f"backed up {snapshot.events} events (up to {top}) to {path} ({_size(snapshot.bytes)})"
    )


@hub.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def restore(path: Path) -> None:
    """Restore the SQLite backup PATH into a fresh store, with a new epoch.

    Run it with the hub stopped.  A Redis store is restored by Redis itself
    (docs/OPERATIONS.md).
    """
    settings = _settings()
    _no_memory(settings, "restore into")
    if settings.store.kind == "redis":
        raise click.ClickException(
            "a Redis store is restored by Redis: stop redis-server, put the backup in its "
            "`dir` as its `dbfilename` (with appendonly off for that start), start it, then "
            "turn appendonly back on with CONFIG SET (docs/OPERATIONS.md, Redis)"
        )
    with _failures():
        snapshot = sqlite_backup.restore(path, settings.store.path)
    click.echo(
        f"restored {snapshot.events} events into {settings.store.path}; new epoch "
        f"{snapshot.epoch}: clients resuming with older ids reload (recovered: false)"
    )


@hub.command()
@click.option("--days", type=click.FloatRange(min=0), help="Override HUB_RETENTION_DAYS.")
@click.option("--max-events", type=click.IntRange(min=0), help="Override HUB_RETENTION_MAX_EVENTS.")
def prune(days: float | None, max_events: int | None) -> None:
    """Remove whole deployments past the retention limits now."""
    settings = _settings()
    retention = Retention(
        settings.retention_days if days is None else days,
        settings.retention_max_events if max_events is None else max_events,
    )
    if not retention.active:
        click.echo(
            "nothing to prune: HUB_RETENTION_DAYS and HUB_RETENTION_MAX_EVENTS are 0 (off); "
            "set them, or give --days or --max-events"
        )
        return
    with _failures(), _store(settings, retention) as store:
        removed = store.prune()
    click.echo(
        f"pruned {removed} events (retention: {retention.days:g} days, "
        f"{retention.max_events} events; 0 is no limit)"
    )


@hub.command()
@click.option(
    "--deployments",
    type=click.IntRange(min=0),
    default=CHECK_DEPLOYMENTS,
    show_default=True,
    help="Compare the views of at most this many newest deployments.",
)
def check(deployments: int) -> None:
    """Check the store: file integrity, the log's order, every view against its events."""
    settings = _settings()
    warnings: list[str] = []
    with _failures():
        if settings.store.kind == "sqlite":
            damage = sqlite_backup.integrity_problems(settings.store.path)
            if damage:  # the views cannot be trusted to read: say what SQLite found
                for problem in damage:
                    click.echo(f"problem: {problem}")
                click.echo(f"{len(damage)} problems: the file is damaged (docs/OPERATIONS.md)")
                sys.exit(1)
        elif settings.store.kind == "redis":
            warnings += redis_backup.persistence_warnings(settings.store)
        with _store(settings) as store:
            report = consistency.check(store, most_deployments=deployments)
    for warning in warnings:
        click.echo(f"warning: {warning}")
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    if report.more_problems:
        click.echo(f"problem: ... and {report.more_problems} more")
    count = len(report.problems) + report.more_problems
    busy = f" ({report.busy} changing while read, not compared)" if report.busy else ""
    click.echo(
        f"{'ok' if not count else f'{count} problems'}: {report.events} events, "
        f"{report.deployments} deployments checked{busy}"
    )
    if count:
        sys.exit(1)
