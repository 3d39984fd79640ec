"""Sending an alert to chat and webhook targets, each with bounded retries.

A generic JSON webhook and the documented text messages of Slack,
Feishu/Lark and DingTalk incoming webhooks; retries with exponential backoff
(``tenacity``); a target that refuses the message (4xx, or the chat service's
own error code) is not retried.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Any

import gevent
import orjson
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from alerts.rules import Alert
from app.config import Settings
from app.metrics import ALERTS_FAILED, ALERTS_SENT
from ledger.timestamps import now_timestamp

log = logging.getLogger(__name__)

KINDS = ("webhook", "slack", "feishu", "dingtalk")
HTTP_TIMEOUT = 10.0


def payload_for(kind: str, alert: Alert, sent_at: str) -> dict[str, Any]:
    """The body a target of ``kind`` expects (each service's documented text message)."""
    text = alert.text()
    if kind == "slack":
        return {"text": text}
    if kind == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if kind == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    return {
        "type": "deployment_alert",
        "cause": alert.cause,
        "project": alert.project,
        "deployment_id": alert.deployment_id,
        "step": alert.step,
        "summary": alert.summary,
        "text": text,
        "details": alert.details,
        "sent_at": sent_at,
    }


class TargetError(Exception):
    """A target did not take the alert; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Sender:
    """Posts alerts to every configured target, each with its own bounded retries."""

    def __init__(
        self, targets: list[tuple[str, str]], *, attempts: int, backoff: float = 1.0
    ) -> None:
        self.targets = targets
        self.attempts = attempts
        self.backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings, backoff: float = 1.0) -> Sender:
        urls = {
            "webhook": settings.alert_webhook_urls,
            "slack": settings.alert_slack_urls,
            "feishu": settings.alert_feishu_urls,
            "dingtalk": settings.alert_dingtalk_urls,
        }
        targets = [(kind, url) for kind in KINDS for url in urls[kind]]
        return cls(targets, attempts=settings.alert_retries, backoff=backoff)

    def deliver(self, alert: Alert) -> bool:
        """Send to every target; ``True`` when at least one took it."""
        sent_at = now_timestamp()
        delivered = False
        for index, (kind, url) in enumerate(self.targets):
            try:
                self._retrying(kind, index, url, payload_for(kind, alert, sent_at))
            except TargetError as error:
                ALERTS_FAILED.labels(kind, alert.cause).inc()
                # Never the URL: chat webhooks carry their credentials in it.
                log.warning(
                    "alert %s not delivered to %s target #%d: %s", alert.key, kind, index, error
                )
                continue
            ALERTS_SENT.labels(kind, alert.cause).inc()
            delivered = True
        return delivered

    def _retrying(self, kind: str, index: int, url: str, body: dict[str, Any]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=60 * self.backoff),
            retry=retry_if_exception(lambda error: isinstance(error, TargetError) and error.retry),
            sleep=gevent.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                post_alert(kind, url, body)


def post_alert(kind: str, url: str, body: dict[str, Any]) -> None:
    """One POST; raise :class:`TargetError` unless the target took it."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at start-up
        url,
        data=orjson.dumps(body),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "deploy-dashboard-hub-alerts",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            answer = response.read(65536)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection
        retry = error.code >= 500 or error.code == 429
        raise TargetError(f"HTTP {error.code}", retry=retry) from None
    except (OSError, TimeoutError) as error:
        raise TargetError(f"unreachable: {type(error).__name__}", retry=True) from None
    if kind in ("feishu", "dingtalk"):
        _check_service_code(kind, answer)


def _check_service_code(kind: str, answer: bytes) -> None:
    """Feishu and DingTalk answer 200 with their own error code in the body."""
    try:
        reply = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return
    if not isinstance(reply, dict):
        return
    code = reply.get("code", reply.get("StatusCode")) if kind == "feishu" else reply.get("errcode")
    if code not in (None, 0):
        message = reply.get("msg") or reply.get("errmsg") or ""
        raise TargetError(f"{kind} refused it: code {code} {str(message)[:200]}", retry=False)
