"""Start-up checks across settings, so a bad deployment stops before it serves anything.

``app.config`` casts each variable on its own; what it cannot see is whether
the values make sense together (no authentication while listening on a public
address), whether a URL can be used, or whether a path can be written.  Every
problem found is reported at once, one message per problem naming the
variable, so that one edit of the manifest fixes them all.  gunicorn's config
and :func:`app.create_app` both run these checks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from app.config import ConfigError, Settings
from storage.sqlite_version import newer_file
from storage.url import BadStoreURL

#: Host names that only the machine itself can reach.
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``HUB_*`` variables; :class:`ConfigError` listing every problem."""
    settings, problems = Settings.parse(os.environ if environ is None else environ)
    problems += settings_problems(settings)
    if problems:
        raise ConfigError(*problems)
    return settings


def check_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` listing every problem of settings built in code."""
    problems = settings_problems(settings)
    if problems:
        raise ConfigError(*problems)


@functools.lru_cache(maxsize=10000)
def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is reachable only from this machine.

    Asked of every request's client address, so each address is parsed once (a
    bounded cache: the least recently seen address goes first).
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_problems(settings: Settings) -> list[str]:
    """One message per problem, each naming the variable to change."""
    problems: list[str] = []
    if settings.port > 65535:
        problems.append(f"HUB_PORT={settings.port} is not a TCP port (0-65535)")
    if (
        not is_loopback(settings.host)
        and not settings.auth_required
        and not settings.allow_unauthenticated
    ):
        problems.append(
            f"HUB_HOST={settings.host} is reachable from other machines but neither "
            "HUB_WEBHOOK_SECRETS nor HUB_WEBHOOK_TOKENS is set, so anyone could post "
            "deployments: set one, or HUB_ALLOW_UNAUTHENTICATED=true to accept that"
        )
    problems += _store_problems(settings)
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        problems.append(
            f"HUB_PUBLIC_URL={settings.public_url!r} must be an http:// or https:// address"
        )
    for proxy in settings.trusted_proxies:
        try:
            ipaddress.ip_address(proxy)
        except ValueError:
            problems.append(
                f"HUB_TRUSTED_PROXIES: {proxy!r} is not an IP address (the peer address "
                "is compared exactly)"
            )
    for origin in settings.allowed_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            problems.append(
                f"HUB_ALLOWED_ORIGINS: {origin!r} is not an origin like https://host[:port]"
            )
    for index, secret in enumerate(settings.webhook_secrets):
        if secret.startswith("whsec_"):
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                problems.append(
                    f"HUB_WEBHOOK_SECRETS: secret #{index} starts with whsec_ but the rest is "
                    "not base64 (Standard Webhooks secrets are)"
                )
    problems += _alert_problems(settings)
    return problems


def _store_problems(settings: Settings) -> list[str]:
    try:
        store = settings.store
    except BadStoreURL as error:
        return [f"HUB_STORE_URL={error}"]
    if store.kind == "memory" and settings.workers > 1:
        return [
            f"HUB_STORE_URL=memory:// keeps events inside one process, but HUB_WORKERS="
            f"{settings.workers}: each worker would see only its own events; use a "
            "sqlite:/// or redis:// URL, or one worker"
        ]
    if store.kind == "sqlite":
        problem = path_problem(store.path) or newer_file(store.path)
        return [f"HUB_STORE_URL: {problem}"] if problem else []
    return []


def path_problem(path: str) -> str | None:
    """Why the file at ``path`` could not be created or opened for writing, or ``None``."""
    target = Path(path)
    if target.exists():
        if not target.is_file():
            return f"{path} exists but is not a file"
        if not os.access(target, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable by this user"
        return None
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable by this user"
    return None


def _alert_problems(settings: Settings) -> list[str]:
    problems = []
    targets = {
        "HUB_ALERT_WEBHOOK_URLS": settings.alert_webhook_urls,
        "HUB_ALERT_SLACK_URLS": settings.alert_slack_urls,
        "HUB_ALERT_FEISHU_URLS": settings.alert_feishu_urls,
        "HUB_ALERT_DINGTALK_URLS": settings.alert_dingtalk_urls,
    }
    for name, urls in targets.items():
        for index, url in enumerate(urls):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # Only its position: webhook URLs carry their credentials in the path.
                problems.append(f"{name}: URL #{index} is not an http(s) URL")
    if settings.alerts:
        if not any(targets.values()):
            problems.append(
                "HUB_ALERTS=true but no alert target is set: set HUB_ALERT_WEBHOOK_URLS, "
                "HUB_ALERT_SLACK_URLS, HUB_ALERT_FEISHU_URLS or HUB_ALERT_DINGTALK_URLS"
            )
        if settings.role == "INGEST":
            problems.append(
                "HUB_ALERTS=true on a process with HUB_ROLE=INGEST, which follows no events: "
                "set it on a process with HUB_ROLE=ALL or STREAM"
            )
        problem = path_problem(settings.alert_state_path)
        if problem:
            problems.append(f"HUB_ALERT_STATE_PATH: {problem}")
    return problems
