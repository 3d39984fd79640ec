"""Twelve-factor settings: the only module that reads ``os.environ``.

Every setting is a field of the frozen :class:`Settings`, read from ``HUB_`` +
its upper-cased name.  Casts are strict and name the variable on failure, so a
typo in a deployment manifest stops start-up with a message instead of running
with a silently different value.  Tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.url import StoreURL

log = logging.getLogger(__name__)

PREFIX = "HUB_"


class ConfigError(ValueError):
    """Settings that cannot be used; each problem names its variable.

    All problems are collected before start-up stops, so one restart fixes them all.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):  # nan passes every bound check, inf stalls a timer
        raise ValueError("expected a finite number")
    return value


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _setting(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    aliases: Mapping[str, str] | None = None,
    doc: str = "",
) -> Any:
    """Declare a field with the metadata that ``from_env`` and the README table use.

    ``aliases`` are older spellings of ``choices`` that keep working.
    """
    return field(
        default=default,
        metadata={
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
            "aliases": aliases or {},
            "doc": doc,
        },
    )


@dataclass(frozen=True)
class Settings:
    """Everything the hub can be told from outside; see README for the table."""

    host: str = _setting("127.0.0.1", doc="Address gunicorn binds to.")
    port: int = _setting(8000, minimum=0, doc="Port gunicorn binds to (0 picks a free one).")
    workers: int = _setting(1, minimum=1, doc="gunicorn gevent worker processes.")
    worker_connections: int = _setting(
        10000, minimum=1, doc="Concurrent connections per gevent worker."
    )
    store_url: str = _setting(
        "sqlite:///var/hub.sqlite3",
        doc="Store and fan-out: `sqlite:///relative/path`, `sqlite:////abs/path`, `memory://`, "
        "or `redis://host:port/db?prefix=name` to share one store between many processes "
        "and hosts (docs/SCALING.md). `HUB_BROKER_URL`, its earlier name, still works.",
    )
    role: str = _setting(
        "ALL",
        choices=("ALL", "INGEST", "STREAM"),
        doc="What this process serves besides the read API: `all`; `ingest` (webhooks, no "
        "WebSocket/SSE and no tailer); `stream` (WebSocket/SSE, no webhooks). Scale the two "
        "separately on Redis.",
    )
    sqlite_synchronous: str = _setting(
        "NORMAL",
        choices=("NORMAL", "FULL"),
        doc="SQLite `synchronous` in WAL mode: NORMAL survives a crash or kill -9 of the hub, "
        "FULL also a power loss.",
    )
    webhook_secrets: tuple[str, ...] = _setting(
        (),
        doc="Comma-separated HMAC secrets (GitHub `X-Hub-Signature-256` and Standard "
        "Webhooks); several for rotation. Empty: unsigned posts are accepted.",
    )
    webhook_tokens: tuple[str, ...] = _setting(
        (), doc="Comma-separated bearer tokens accepted on ingest."
    )
    max_body_bytes: int = _setting(1048576, minimum=1, doc="Ingest body cap (413 above it).")
    body_timeout: float = _setting(
        10.0,
        minimum=0.1,
        doc="Seconds a request body may take to arrive (408 after it; the connection is closed).",
    )
    max_connections_per_address: int = _setting(
        256,
        minimum=0,
        doc="Requests (WebSockets and streams included) one client address may have in flight "
        "per worker; 429 beyond it (0: no limit; loopback exempt unless "
        "`HUB_RATE_LIMIT_LOOPBACK`).",
    )
    max_batch_events: int = _setting(1000, minimum=1, doc='Events per `{"events": [...]}` batch.')
    max_json_depth: int = _setting(32, minimum=2, doc="Deepest JSON nesting accepted (422 above).")
    stale_after: float = _setting(
        3600.0,
        minimum=0,
        doc="Seconds without any news after which an open deployment (and its open steps) "
        "shows as stale, its timer stopped at the last news; any new event revives it (0: never).",
    )
    retention_days: float = _setting(
        30.0, minimum=0, doc="Events older than this are pruned (0 keeps them forever)."
    )
    retention_max_events: int = _setting(
        1000000, minimum=0, doc="At most this many events are kept (0: no count limit)."
    )
    trusted_proxies: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"),
        doc="Peer addresses whose X-Forwarded-For/Proto/Prefix headers are believed.",
    )
    log_level: str = _setting(
        "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), doc="Log level."
    )
    tail_interval: float = _setting(
        0.05,
        minimum=0.001,
        doc="Seconds between polls of the event log for events other workers stored.",
    )
    fanout_delay: float = _setting(
        0.02,
        minimum=0.0,
        maximum=1.0,
        doc="Seconds the fan-out waits after sending events before it sends again, so that "
        "the events stored meanwhile reach each client in one write instead of one each "
        "(less CPU with many clients); an event after a quiet spell still goes out at once. "
        "`0`: every event as soon as it is stored.",
    )
    ws_ping_interval: float = _setting(
        25.0, minimum=0.05, doc="Seconds between WebSocket pings; a silent peer is closed."
    )
    ws_max_connections: int = _setting(
        10000, minimum=1, doc="WebSocket connections per worker (503 before the upgrade)."
    )
    ws_max_subscriptions: int = _setting(100, minimum=1, doc="Subscriptions per connection.")
    ws_max_frame_bytes: int = _setting(
        65536, minimum=128, doc="Largest client frame (close 1009 above it)."
    )
    ws_deflate: str = _setting(
        "SHARED",
        choices=("SHARED", "CONNECTION", "OFF"),
        aliases={"TRUE": "SHARED", "FALSE": "OFF"},
        doc="permessage-deflate for WebSocket clients that offer it: `shared` compresses each "
        "frame once per worker, on its own (no compression memory per connection); "
        "`connection` keeps a compressor per connection (smaller frames, about 100 KB more "
        "per connection, CPU per client); `off`. Inflating a client message stops at "
        "`HUB_WS_MAX_FRAME_BYTES` either way. `true`/`false` mean `shared`/`off`.",
    )
    ws_send_queue: int = _setting(
        2000, minimum=1, doc="Frames queued per connection before it counts as too slow (1013)."
    )
    ws_send_timeout: float = _setting(
        10.0, minimum=0.1, doc="Seconds one frame may take to write before the peer is dropped."
    )
    replay_project_limit: int = _setting(
        200, minimum=1, doc="Events replayed to a project subscription without `since`."
    )
    replay_max_events: int = _setting(
        10000, minimum=1, doc="Most events replayed for one subscription."
    )
    read_tokens: tuple[str, ...] = _setting(
        (), doc="Tokens required to read (WebSocket, SSE, read API); empty: open."
    )
    metrics_tokens: tuple[str, ...] = _setting(
        (),
        doc="Tokens that may read `/metrics` (Prometheus' `authorization` bearer token); "
        "empty: the read tokens, so metrics are as open as the read API.",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), doc="Origins allowed to open a WebSocket; empty: any."
    )
    github_repositories: tuple[str, ...] = _setting(
        (),
        doc="Repositories (`owner/repo`, or `owner/repo=project` to name the project) whose "
        "`workflow_run`/`workflow_job`/`deployment`/`deployment_status` deliveries on "
        "`/api/webhooks/github` are recorded; empty: none.",
    )
    gitlab_projects: tuple[str, ...] = _setting(
        (),
        doc="GitLab projects (`group/path`, or `group/path=project` to name the project) whose "
        "`Pipeline Hook`/`Job Hook`/`Deployment Hook` deliveries on `/api/webhooks/gitlab` "
        "are recorded; empty: none.",
    )
    gitlab_tokens: tuple[str, ...] = _setting(
        (),
        doc="Comma-separated secret tokens GitLab sends as `X-Gitlab-Token` to "
        "`/api/webhooks/gitlab` (several for rotation). GitLab's signing token "
        "(`webhook-signature`) is checked against `HUB_WEBHOOK_SECRETS`. Empty: that route "
        "takes the ingest credentials only.",
    )
    flux_secrets: tuple[str, ...] = _setting(
        (),
        doc="Comma-separated HMAC keys (the `token` of a Flux `generic-hmac` provider's Secret) "
        "checked against `X-Signature` on `/api/webhooks/flux`; several for rotation. Empty: "
        "that route takes the ingest credentials only.",
    )
    allow_unauthenticated: bool = _setting(
        False,
        doc="Start even though no webhook secret or token is set while `HUB_HOST` is not a "
        "loopback address (anyone who reaches the port could post).",
    )
    log_format: str = _setting(
        "PLAIN",
        choices=("PLAIN", "JSON"),
        doc="Log lines as PLAIN text or one JSON object per line; either way with the request id.",
    )
    ingest_rate: float = _setting(
        50.0,
        minimum=0,
        doc="Ingest requests per second allowed per sender identity (secret or token; 0: no "
        "limit). Per worker process.",
    )
    ingest_burst: int = _setting(
        500,
        minimum=1,
        doc="Ingest requests a sender identity may make at once before the rate applies.",
    )
    ingest_address_rate: float = _setting(
        100.0,
        minimum=0,
        doc="Ingest requests per second allowed per client address (0: no limit). Per worker.",
    )
    ingest_address_burst: int = _setting(
        1000, minimum=1, doc="Ingest requests one address may make at once before the rate applies."
    )
    ws_connect_rate: float = _setting(
        10.0,
        minimum=0,
        doc="New WebSocket connections per second allowed per client address (0: no limit). "
        "Per worker.",
    )
    ws_connect_burst: int = _setting(
        100, minimum=1, doc="New WebSocket connections one address may open at once."
    )
    rate_limit_loopback: bool = _setting(
        False, doc="Rate-limit loopback clients too (by default they are exempt)."
    )
    alerts: bool = _setting(
        False,
        doc="Send alerts from this process (set it on one process only; workers of one gunicorn "
        "elect a single sender among themselves).",
    )
    alert_webhook_urls: tuple[str, ...] = _setting(
        (), doc="Comma-separated URLs that receive alerts as generic JSON."
    )
    alert_slack_urls: tuple[str, ...] = _setting(
        (), doc="Comma-separated Slack incoming-webhook URLs for alerts."
    )
    alert_feishu_urls: tuple[str, ...] = _setting(
        (), doc="Comma-separated Feishu/Lark custom-bot webhook URLs for alerts."
    )
    alert_dingtalk_urls: tuple[str, ...] = _setting(
        (), doc="Comma-separated DingTalk custom-robot webhook URLs for alerts."
    )
    alert_long_running_seconds: float = _setting(
        0.0,
        minimum=0,
        doc="Alert when a deployment has been running longer than this (0: off).",
    )
    alert_long_running_p95_factor: float = _setting(
        0.0,
        minimum=0,
        doc="Alert when a deployment runs longer than this many times its project's p95 "
        "duration over recent deployments (0: off; e.g. 2).",
    )
    alert_stalled_step_seconds: float = _setting(
        0.0,
        minimum=0,
        doc="Alert when a step has been running this long with no news of its deployment (0: off).",
    )
    alert_check_interval: float = _setting(
        30.0, minimum=0.05, doc="Seconds between checks for long-running and stalled deployments."
    )
    alert_retries: int = _setting(
        5, minimum=1, doc="Attempts to deliver one alert to one target (backoff in between)."
    )
    alert_state_path: str = _setting(
        "var/alerts.sqlite3",
        doc="SQLite file remembering which alerts were sent, so a restart sends none twice.",
    )
    public_url: str = _setting(
        "",
        doc="The dashboard's address as people open it (e.g. "
        "`https://ci.example.com/project-dashboard/`): alerts link to the failing log line "
        "under it. Empty: alerts carry the link relative to the dashboard (`#/deployments/...`).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``HUB_*`` variables; raise :class:`ConfigError` on a bad one."""
        env = os.environ if environ is None else environ
        settings, problems = cls.parse(env)
        if problems:
            raise ConfigError(*problems)
        return settings

    @classmethod
    def parse(cls, environ: Mapping[str, str]) -> tuple[Settings, list[str]]:
        """Settings from the variables that parse, and one problem per variable that does not.

        A variable that does not parse keeps its default, so that the other
        checks of ``app.validation`` can still run and report at the same time.
        """
        values: dict[str, Any] = {}
        problems: list[str] = []
        known = set(RENAMED)
        environ = _with_renamed(environ)
        for spec in dataclasses.fields(cls):
            name = PREFIX + spec.name.upper()
            known.add(name)
            if name not in environ:
                continue
            try:
                values[spec.name] = _cast(name, environ[name], spec)
            except ConfigError as error:
                problems.extend(error.problems)
        for name in sorted(set(environ) - known):
            if name.startswith(PREFIX) and not name.startswith("HUB_TEST_"):
                log.warning("unknown setting %s is ignored", name)
        return cls(**values), problems

    @functools.cached_property
    def store(self) -> StoreURL:
        """``store_url`` parsed; raises :class:`~storage.url.BadStoreURL` (start-up checks it)."""
        return StoreURL.parse(self.store_url)

    @property
    def auth_required(self) -> bool:
        return bool(self.webhook_secrets or self.webhook_tokens)


#: Settings that were renamed: the old variable still works, with a warning.
RENAMED = {"HUB_BROKER_URL": "HUB_STORE_URL"}


def _with_renamed(environ: Mapping[str, str]) -> Mapping[str, str]:
    """``environ`` with each old name read as its new one (the new one wins if both are set)."""
    given = [old for old in RENAMED if old in environ]
    if not given:
        return environ
    updated = dict(environ)
    for old in given:
        new = RENAMED[old]
        log.warning("%s is deprecated: set %s instead", old, new)
        updated.setdefault(new, updated[old])
    return updated


def _cast(name: str, raw: str, spec: dataclasses.Field[Any]) -> Any:
    caster: Callable[[str], Any]
    if isinstance(spec.default, bool):
        caster = _parse_bool
    elif isinstance(spec.default, int):
        caster = int
    elif isinstance(spec.default, float):
        caster = _parse_float
    elif isinstance(spec.default, tuple):
        caster = _parse_list
    else:
        caster = str
    try:
        value = caster(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not valid: {exc}") from None
    minimum = spec.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    maximum = spec.metadata["maximum"]
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {maximum}")
    choices = spec.metadata["choices"]
    if choices:
        value = str(value).upper()
        value = spec.metadata["aliases"].get(value, value)
        if value not in choices:
            raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return value


def settings_table() -> str:
    """The README's settings table, generated so it cannot drift from the code."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in dataclasses.fields(Settings):
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        shown = f"`{shown}`" if shown else "(empty)"
        rows.append(f"| `{PREFIX}{spec.name.upper()}` | {shown} | {spec.metadata['doc']} |")
    return "\n".join(rows)
