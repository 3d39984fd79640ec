"""Who may post: GitHub HMAC, Standard Webhooks, or a bearer token; and the
schemes of the senders with routes of their own: GitLab's ``X-Gitlab-Token``
and Flux's ``X-Signature``.

Several secrets and tokens may be active at once so they can be rotated
without downtime.  Signatures are checked over the raw body bytes and compared
in constant time; the Standard Webhooks check (with its 5-minute timestamp
window) is the ``standardwebhooks`` reference implementation.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.errors import Unauthorized


class HeaderLookup(Protocol):
    """What both a dict and werkzeug's case-insensitive ``Headers`` offer."""

    def get(self, key: str, /) -> str | None: ...


def _standard_webhook(secret: str) -> Webhook:
    """``whsec_``-prefixed secrets are base64 per the spec; any other is used as raw bytes."""
    return Webhook(secret if secret.startswith("whsec_") else secret.encode())


@dataclass(frozen=True, slots=True)
class Sender:
    """Who posted, as far as the request proves it.

    ``identity`` names the credential for logs and rate limits (``token#1``,
    ``secret#0``, ``anonymous``); ``scope`` is a fingerprint of the credential
    itself, which namespaces the sender's idempotency keys, so one credential
    cannot claim another's.  ``signed_id`` is the delivery id the signature
    covers (Standard Webhooks' ``webhook-id``); ``signed`` says a signature
    covered the body, which makes unsigned delivery headers untrustworthy.
    """

    identity: str
    scope: str
    signed: bool = False
    signed_id: str | None = None


ANONYMOUS = Sender("anonymous", "anonymous")


def _fingerprint(kind: str, credential: str) -> str:
    digest = hashlib.sha256(f"{kind}\0{credential}".encode()).hexdigest()
    return f"{kind}:{digest[:16]}"


def verify_request(
    headers: HeaderLookup, body: bytes, *, secrets: tuple[str, ...], tokens: tuple[str, ...]
) -> Sender:
    """Return who sent the request or raise :class:`Unauthorized`.

    With nothing configured every caller is anonymous; the app warns about
    that at start-up.
    """
    if not secrets and not tokens:
        return ANONYMOUS
    authorization = headers.get("Authorization") or ""
    if tokens and authorization[:7].lower() == "bearer ":
        offered = authorization[7:].strip().encode()
        for index, token in enumerate(tokens):
            if hmac.compare_digest(offered, token.encode()):
                return Sender(f"token#{index}", _fingerprint("token", token))
        raise Unauthorized("bearer token is not valid")
    github = headers.get("X-Hub-Signature-256")
    if secrets and github is not None:
        offered = github.strip().encode()
        for index, secret in enumerate(secrets):
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(offered, f"sha256={digest}".encode()):
                return Sender(f"secret#{index}", _fingerprint("secret", secret), signed=True)
        raise Unauthorized("X-Hub-Signature-256 does not match the body")
    if secrets and headers.get("webhook-signature") is not None:
        return _verify_standard(headers, body, secrets)
    raise Unauthorized(
        "missing signature or token: send X-Hub-Signature-256, Standard "
        "Webhooks headers or Authorization: Bearer"
    )


def verify_gitlab(
    headers: HeaderLookup,
    body: bytes,
    *,
    gitlab_tokens: tuple[str, ...],
    secrets: tuple[str, ...],
    tokens: tuple[str, ...],
) -> Sender:
    """Who sent a GitLab delivery, or :class:`Unauthorized`.

    GitLab's signing token (Standard Webhooks ``webhook-signature`` over the
    ``webhook-id``, timestamp and body) is checked against the ingest secrets
    whenever it is sent and secrets are set; otherwise the secret token GitLab
    sends as ``X-Gitlab-Token`` is compared, in constant time, with each of
    ``gitlab_tokens``.  Without either, the ingest credentials apply as on
    every route (a bearer token, or nothing when none is configured).
    """
    if secrets and headers.get("webhook-signature") is not None:
        return _verify_standard(headers, body, secrets)
    offered = headers.get("X-Gitlab-Token")
    if gitlab_tokens and offered is not None:
        for index, token in enumerate(gitlab_tokens):
            if hmac.compare_digest(offered.encode(), token.encode()):
                return Sender(f"gitlab-token#{index}", _fingerprint("gitlab-token", token))
        raise Unauthorized("X-Gitlab-Token is not valid")
    if gitlab_tokens and not (secrets or tokens):
        raise Unauthorized("missing X-Gitlab-Token (the webhook's secret token)")
    return verify_request(headers, body, secrets=secrets, tokens=tokens)


#: The hash functions Flux's ``generic-hmac`` provider may name in ``X-Signature``.
FLUX_HASHES = {
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


def verify_flux(
    headers: HeaderLookup,
    body: bytes,
    *,
    flux_secrets: tuple[str, ...],
    secrets: tuple[str, ...],
    tokens: tuple[str, ...],
) -> Sender:
    """Who sent a Flux notification, or :class:`Unauthorized`.

    Flux's ``generic-hmac`` provider signs the body with the ``token`` of its
    Secret and sends ``X-Signature: <hash>=<hex HMAC>`` (``sha256`` unless Flux
    changes its default); it is checked against each of ``flux_secrets``.
    Without it, the ingest credentials apply (a ``generic`` provider can send
    ``Authorization: Bearer`` through its Secret's ``headers``).
    """
    signature = headers.get("X-Signature")
    if flux_secrets and signature is not None:
        name, _, offered = signature.strip().partition("=")
        digest = FLUX_HASHES.get(name.lower())
        if digest is None or not offered:
            raise Unauthorized(
                "X-Signature must be <hash>=<hex HMAC of the body>, hash one of "
                + ", ".join(FLUX_HASHES)
            )
        for index, secret in enumerate(flux_secrets):
            expected = hmac.new(secret.encode(), body, digest).hexdigest()
            if hmac.compare_digest(offered.lower().encode(), expected.encode()):
                return Sender(f"flux-secret#{index}", _fingerprint("flux", secret), signed=True)
        raise Unauthorized("X-Signature does not match the body")
    if flux_secrets and not (secrets or tokens):
        raise Unauthorized("missing X-Signature (Flux's generic-hmac provider sends it)")
    return verify_request(headers, body, secrets=secrets, tokens=tokens)


def _verify_standard(headers: HeaderLookup, body: bytes, secrets: tuple[str, ...]) -> Sender:
    wanted = {
        name: headers.get(name) or ""
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    reason = "webhook-signature does not match the body"
    for index, secret in enumerate(secrets):
        try:
            _standard_webhook(secret).verify(body.decode("utf-8"), wanted, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc) or "headers" in str(exc).lower():
                raise Unauthorized(f"Standard Webhooks: {exc} (window is 5 minutes)") from None
            continue
        except (ValueError, binascii.Error):  # malformed signature list or base64
            reason = "webhook-signature is malformed"
            continue
        return Sender(
            f"secret#{index}",
            _fingerprint("secret", secret),
            signed=True,
            signed_id=wanted["webhook-id"],
        )
    raise Unauthorized(reason)


def check_read_token(
    headers: HeaderLookup, query_token: str | None, tokens: tuple[str, ...]
) -> None:
    """Reads are open unless read tokens are set; then one must come as ``?token=`` or bearer.

    Browsers cannot set headers on a WebSocket or EventSource, hence the query form.
    """
    if not tokens:
        return
    authorization = headers.get("Authorization") or ""
    offered = query_token or (
        authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    )
    if not any(hmac.compare_digest(offered.encode(), t.encode()) for t in tokens):
        raise Unauthorized("a read token is required: ?token=... or Authorization: Bearer")
