"""The ingest routes: check, authenticate, validate, store whole, then broadcast.

Order of checks, cheapest and least revealing first: the client address's
rate limit (429), media type (415), the body's transfer coding (501), size
(413) and arrival within its deadline (408, ``app/body.py``), text encoding
(400), signature or token (401), the sender identity's rate limit (429), JSON
(400), shape and values (422).  Only a request that passes all of them reaches the store, in
one transaction; the broadcaster is told after the commit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from flask import Blueprint, Response, jsonify, request

from app.auth import HeaderLookup, Sender, verify_flux, verify_gitlab, verify_request
from app.body import read_body
from app.context import HubContext, current_context
from app.errors import (
    BackendUnavailable,
    Conflict,
    HubError,
    InvalidJSON,
    UnsupportedMediaType,
    from_event_error,
)
from app.flux import decode_event as decode_flux
from app.github import decode_delivery
from app.gitlab import decode_delivery as decode_gitlab
from app.idempotency import body_digest, delivery_key, scoped
from app.ingest import decode_events
from app.metrics import (
    DUPLICATES,
    INGEST_SECONDS,
    REQUESTS_REJECTED,
    STORE_SECONDS,
    count_accepted,
)
from app.ratelimit import RateLimits, current_limits
from ledger.companions import with_companions
from ledger.errors import EventError
from ledger.events import Event
from senders.github import IgnoredDelivery, repository_projects
from senders.gitlab import project_names
from storage.store import Batch, DeliveryConflict, StoreUnavailable

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger(__name__)

webhooks = Blueprint("webhooks", __name__)


#: Turns a request body (already size-, type- and signature-checked) into its events.
Decoder = Callable[[bytes], list[Event]]
#: Says who sent a request (headers, raw body) or raises :class:`~app.errors.Unauthorized`.
Verifier = Callable[[HeaderLookup, bytes], Sender]


class EnvironHeaders:
    """A request's headers looked up straight in its WSGI environ, as werkzeug's
    ``EnvironHeaders`` does (any case), without building werkzeug's request."""

    __slots__ = ("environ",)

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ

    def get(self, key: str, /) -> str | None:
        name = key.upper().replace("-", "_")
        if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = "HTTP_" + name
        value = self.environ.get(name)
        return None if value is None else str(value)


def mimetype(environ: WSGIEnvironment) -> str:
    """The media type of the body, as werkzeug's ``Request.mimetype`` gives it."""
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def receive(
    context: HubContext,
    limits: RateLimits,
    environ: WSGIEnvironment,
    route: str,
    decode: Decoder | None = None,
    verify: Verifier | None = None,
) -> bytes:
    """One ingest request, from its WSGI environ to the JSON body of its 200 answer.

    The rules of every ingest route, in one place: both the Flask views below
    and the lean route (``app/lean_ingest.py``) call it.  A refusal is raised
    as a :class:`~app.errors.HubError`, counted and logged here.
    """
    started = time.perf_counter()
    try:
        try:
            body = _accept(context, limits, environ, route, decode, verify)
        except EventError as refused:
            raise from_event_error(refused) from None
    except HubError as error:
        REQUESTS_REJECTED.labels(error.code).inc()
        log.info(
            "ingest rejected",
            extra={"route": route, "code": error.code, "error_message": error.message},
        )
        raise
    INGEST_SECONDS.observe(time.perf_counter() - started)
    return body


def _accept(
    context: HubContext,
    limits: RateLimits,
    environ: WSGIEnvironment,
    route: str,
    decode: Decoder | None,
    verify: Verifier | None,
) -> bytes:
    settings = context.settings
    address = environ.get("REMOTE_ADDR")
    limits.check_ingest_address(address)
    media_type = mimetype(environ)
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {media_type or 'missing'!r}"
        )
    body = read_body(environ, limit=settings.max_body_bytes, deadline=settings.body_timeout)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"body is not UTF-8 (byte {exc.start})") from None
    headers = EnvironHeaders(environ)
    sender = (
        verify(headers, body)
        if verify is not None
        else verify_request(
            headers, body, secrets=settings.webhook_secrets, tokens=settings.webhook_tokens
        )
    )
    limits.check_ingest_identity(sender.identity, address)
    split = with_companions(
        decode(body)
        if decode is not None
        else decode_events(
            body, route, max_depth=settings.max_json_depth, max_batch=settings.max_batch_events
        )
    )
    events = split.events
    batch = Batch(scoped(sender, events), delivery_key(sender, environ, events), body_digest(body))
    store_started = time.perf_counter()  # what STORE_SECONDS.time() does, for half the cost
    try:
        accepted = context.store.append(batch)
    except DeliveryConflict:
        raise Conflict(
            "this delivery id was used before for another body; nothing was stored "
            "(a new body needs a new id)",
            {"delivery_id": ["Already used for another body."]},
        ) from None
    except StoreUnavailable as exc:
        raise BackendUnavailable(
            f"event store unavailable; nothing was stored ({exc})", headers={"Retry-After": "5"}
        ) from None
    finally:
        STORE_SECONDS.observe(time.perf_counter() - store_started)
    context.notify(accepted.stored)
    for kind, count in Counter(event.type for event in accepted.stored).items():
        count_accepted(kind, count)
    if len(accepted.stored) < len(events):
        DUPLICATES.inc(len(events) - len(accepted.stored))
    log.info(
        "ingest accepted",
        extra={
            "route": route,
            "sender": sender.identity,
            "events": len(events),
            "duplicate": accepted.duplicate,
        },
    )
    ids = [accepted.ids[index] for index in split.own]
    body_out: dict[str, object] = {
        "success": True,
        "accepted": len(ids),
        "ids": ids,
        "duplicate": accepted.duplicate,
    }
    # What jsonify would send (sorted keys), for much less on the hot path.
    return orjson.dumps(body_out, option=orjson.OPT_SORT_KEYS)


def _ingest(route: str, decode: Decoder | None = None, verify: Verifier | None = None) -> Response:
    body = receive(current_context(), current_limits(), request.environ, route, decode, verify)
    return Response(body, mimetype="application/json")


#: The routes whose requests the lean route may answer before Flask: path -> body formats.
LEAN_ROUTES = {
    "/webhooks/deployment": "deployment",
    "/webhook/deployment": "summary",
    "/webhook/step": "step",
    "/webhook/project-status": "project_status",
}


@webhooks.post("/webhooks/deployment")
def deployment_event() -> Response:
    """Typed events of CONTRACT.md and the flat legacy body (LEGACY.md §1-§2)."""
    return _ingest("deployment")


@webhooks.post("/webhook/deployment")
def deployment_summary() -> Response:
    """A deployment's final summary with ``step_details`` (LEGACY.md §3)."""
    return _ingest("summary")


@webhooks.post("/webhook/step")
def step_report() -> Response:
    """One step of a deployment the body does not identify (LEGACY.md §4)."""
    return _ingest("step")


@webhooks.post("/webhook/project-status")
def project_status() -> Response:
    """A project-level note (LEGACY.md §5)."""
    return _ingest("project_status")


@webhooks.post("/webhooks/github")
def github_delivery() -> Response:
    """GitHub ``workflow_run``/``workflow_job``/``deployment``/``deployment_status``
    deliveries (docs/SENDERS.md, ``app/github.py``).

    Signed like every ingest; a ``ping``, other events and repositories not in
    ``HUB_GITHUB_REPOSITORIES`` are acknowledged with 200 and store nothing,
    so GitHub does not mark the hook as failing.
    """
    try:
        return _ingest("github", _github_events)
    except IgnoredDelivery as ignored:
        return ignored_answer("github", ignored)


def ignored_answer(sender: str, ignored: IgnoredDelivery) -> Response:
    """200 for a delivery that stores nothing, saying why (and what a ``ping`` is told)."""
    log.info("delivery ignored", extra={"route": sender, "reason": ignored.reason})
    body: dict[str, object] = {
        "success": True,
        "accepted": 0,
        "ids": [],
        "ignored": ignored.reason,
    }
    if ignored.message is not None:
        body["message"] = ignored.message
    return jsonify(body)


def _github_events(body: bytes) -> list[Event]:
    settings = current_context().settings
    return decode_delivery(
        body,
        request.headers.get("X-GitHub-Event"),
        repository_projects(settings.github_repositories),
        max_depth=settings.max_json_depth,
        max_events=settings.max_batch_events,
    )


@webhooks.post("/webhooks/gitlab")
def gitlab_delivery() -> Response:
    """GitLab ``Pipeline Hook``/``Job Hook``/``Deployment Hook`` deliveries (``app/gitlab.py``).

    Authenticated by GitLab's ``X-Gitlab-Token`` (``HUB_GITLAB_TOKENS``) or its
    signing token; other hooks and projects not in ``HUB_GITLAB_PROJECTS`` are
    acknowledged with 200 and store nothing.
    """
    try:
        return _ingest("gitlab", _gitlab_events, _gitlab_sender)
    except IgnoredDelivery as ignored:
        return ignored_answer("gitlab", ignored)


def _gitlab_sender(headers: HeaderLookup, body: bytes) -> Sender:
    settings = current_context().settings
    return verify_gitlab(
        headers,
        body,
        gitlab_tokens=settings.gitlab_tokens,
        secrets=settings.webhook_secrets,
        tokens=settings.webhook_tokens,
    )


def _gitlab_events(body: bytes) -> list[Event]:
    settings = current_context().settings
    return decode_gitlab(
        body,
        request.headers.get("X-Gitlab-Event"),
        project_names(settings.gitlab_projects),
        max_depth=settings.max_json_depth,
        max_events=settings.max_batch_events,
    )


@webhooks.post("/webhooks/flux")
def flux_event() -> Response:
    """Flux notification-controller events (``generic-hmac`` or ``generic`` provider,
    ``app/flux.py``): Kustomization and HelmRelease reconciliations as deployments.

    Signed with ``X-Signature`` (``HUB_FLUX_SECRETS``); events of other kinds,
    and events without a revision, are acknowledged with 200 and store nothing.
    """
    try:
        return _ingest("flux", _flux_events, _flux_sender)
    except IgnoredDelivery as ignored:
        return ignored_answer("flux", ignored)


def _flux_sender(headers: HeaderLookup, body: bytes) -> Sender:
    settings = current_context().settings
    return verify_flux(
        headers,
        body,
        flux_secrets=settings.flux_secrets,
        secrets=settings.webhook_secrets,
        tokens=settings.webhook_tokens,
    )


def _flux_events(body: bytes) -> list[Event]:
    return decode_flux(body, max_depth=current_context().settings.max_json_depth)
