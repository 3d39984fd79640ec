"""GitHub HMAC, Standard Webhooks and bearer tokens, with rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook

from app.auth import verify_flux, verify_gitlab, verify_request
from app.errors import Unauthorized

BODY = b'{"type": "test"}'
SECRETS = ("old-secret", "new-secret")


def github_signature(secret: str, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(secret: str, body: bytes = BODY, at: float | None = None) -> dict[str, str]:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signature = Webhook(secret.encode()).sign("msg_1", moment, body.decode())
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def verify(headers: dict[str, str], body: bytes = BODY) -> str:
    """The identity the request proves (who signed it, for logs and rate limits)."""
    return verify_request(headers, body, secrets=SECRETS, tokens=("tok-1", "tok-2")).identity


def test_nothing_configured_accepts_anyone() -> None:
    assert verify_request({}, BODY, secrets=(), tokens=()).identity == "anonymous"


@pytest.mark.parametrize("secret", SECRETS)
def test_either_rotated_secret_signs(secret: str) -> None:
    identity = verify({"X-Hub-Signature-256": github_signature(secret)})
    assert identity == f"secret#{SECRETS.index(secret)}"


def test_signature_of_another_body_is_refused() -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        verify({"X-Hub-Signature-256": github_signature("new-secret", b"{}")})


@pytest.mark.parametrize("header", ["sha256=", "sha1=abc", "garbage", ""])
def test_malformed_github_signatures_are_refused(header: str) -> None:
    with pytest.raises(Unauthorized):
        verify({"X-Hub-Signature-256": header})


def test_bearer_tokens_are_accepted_and_checked() -> None:
    assert verify({"Authorization": "Bearer tok-2"}) == "token#1"
    with pytest.raises(Unauthorized, match="bearer token"):
        verify({"Authorization": "Bearer nope"})


def test_missing_credentials_are_refused() -> None:
    with pytest.raises(Unauthorized, match="missing signature"):
        verify({})


def test_standard_webhooks_signature_is_accepted() -> None:
    assert verify(standard_headers("new-secret")) == "secret#1"


def test_standard_webhooks_whsec_secret_is_base64() -> None:
    raw = b"0123456789abcdef"
    secret = "whsec_" + base64.b64encode(raw).decode()
    headers = standard_headers(raw.decode())
    assert verify_request(headers, BODY, secrets=(secret,), tokens=()).identity == "secret#0"


def test_stale_standard_webhooks_timestamp_is_refused() -> None:
    with pytest.raises(Unauthorized, match="too old"):
        verify(standard_headers("new-secret", at=time.time() - 600))


def test_future_standard_webhooks_timestamp_is_refused() -> None:
    with pytest.raises(Unauthorized, match="too new"):
        verify(standard_headers("new-secret", at=time.time() + 600))


@pytest.mark.parametrize("signature", ["v1", "v1,!!!", "v2,abc", ""])
def test_malformed_standard_signatures_are_refused(signature: str) -> None:
    headers = {**standard_headers("new-secret"), "webhook-signature": signature}
    with pytest.raises(Unauthorized):
        verify(headers)


def test_only_standard_webhooks_sign_a_delivery_id() -> None:
    """The webhook-id is covered by the signature; GitHub's HMAC covers the body only."""
    standard = verify_request(standard_headers("new-secret"), BODY, secrets=SECRETS, tokens=())
    assert (standard.signed, standard.signed_id) == (True, "msg_1")
    github = verify_request(
        {"X-Hub-Signature-256": github_signature("new-secret")}, BODY, secrets=SECRETS, tokens=()
    )
    assert (github.signed, github.signed_id) == (True, None)
    bearer = verify_request({"Authorization": "Bearer t"}, BODY, secrets=(), tokens=("t",))
    assert (bearer.signed, bearer.signed_id) == (False, None)


def test_each_credential_has_its_own_scope_and_no_secret_in_it() -> None:
    scopes = {
        verify_request({"Authorization": f"Bearer {t}"}, BODY, secrets=(), tokens=("a", "b")).scope
        for t in ("a", "b")
    }
    assert len(scopes) == 2
    assert all(s != "a" and s.split(":")[1] != "b" for s in scopes)


# -- GitLab's secret token and signing token -----------------------------------------------


def gitlab(headers: dict[str, str], *, secrets: tuple[str, ...] = SECRETS) -> str:
    return verify_gitlab(
        headers, BODY, gitlab_tokens=("gl-old", "gl-new"), secrets=secrets, tokens=("tok-1",)
    ).identity


def test_gitlab_tokens_rotate_and_are_their_own_credentials() -> None:
    assert gitlab({"X-Gitlab-Token": "gl-new"}) == "gitlab-token#1"
    assert gitlab({"X-Gitlab-Token": "gl-old"}) == "gitlab-token#0"
    with pytest.raises(Unauthorized, match="X-Gitlab-Token is not valid"):
        gitlab({"X-Gitlab-Token": "tok-1"})


def test_gitlab_signing_token_is_checked_whenever_it_is_sent() -> None:
    assert gitlab(standard_headers("new-secret")) == "secret#1"
    with pytest.raises(Unauthorized):
        gitlab({**standard_headers("someone-else"), "X-Gitlab-Token": "gl-new"})


def test_gitlab_falls_back_to_the_ingest_credentials() -> None:
    assert gitlab({"Authorization": "Bearer tok-1"}) == "token#0"
    with pytest.raises(Unauthorized, match="missing signature or token"):
        gitlab({})


def test_gitlab_tokens_alone_are_required() -> None:
    with pytest.raises(Unauthorized, match="missing X-Gitlab-Token"):
        verify_gitlab({}, BODY, gitlab_tokens=("gl",), secrets=(), tokens=())
    open_route = verify_gitlab({}, BODY, gitlab_tokens=(), secrets=(), tokens=())
    assert open_route.identity == "anonymous"


# -- Flux's X-Signature ----------------------------------------------------------------------


def flux(headers: dict[str, str], *, tokens: tuple[str, ...] = ("tok-1",)) -> str:
    return verify_flux(
        headers, BODY, flux_secrets=("fx-old", "fx-new"), secrets=(), tokens=tokens
    ).identity


@pytest.mark.parametrize("name", ["sha224", "sha256", "sha384", "sha512"])
def test_flux_signatures_of_every_hash_flux_may_name(name: str) -> None:
    digest = hmac.new(b"fx-new", BODY, getattr(hashlib, name)).hexdigest()
    assert flux({"X-Signature": f"{name}={digest}"}) == "flux-secret#1"
    assert flux({"X-Signature": f"{name.upper()}={digest.upper()}"}) == "flux-secret#1"


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("sha256=" + "0" * 64, "does not match"),
        ("md5=abc", "X-Signature must be"),
        ("sha256", "X-Signature must be"),
    ],
)
def test_bad_flux_signatures_are_refused(signature: str, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        flux({"X-Signature": signature})


def test_flux_without_a_signature_needs_an_ingest_credential() -> None:
    assert flux({"Authorization": "Bearer tok-1"}) == "token#0"
    with pytest.raises(Unauthorized, match="missing X-Signature"):
        flux({}, tokens=())
