"""Flux notification-controller events as the hub's typed events.

Flux's notification-controller forwards the events of its controllers to a
``generic`` or ``generic-hmac`` provider as one JSON object each (the
``Event`` of ``fluxcd/pkg/apis/event``): the object (``involvedObject``), a
``severity`` (``info``, ``error``, ``trace``), a ``reason``, a ``message``, a
``timestamp`` and ``metadata`` (the source ``revision``, the alert's
``summary`` and its ``eventMetadata``).

A Kustomization or HelmRelease reconciled to a revision is a **deployment**
of that object to its environment: one deployment per object and revision,
``flux-<name>-<hash>`` (the hash covers the cluster, kind, namespace, name,
revision and, for Helm, the values' token).  ``Progressing`` starts it,
``...Succeeded`` ends it with success, an ``error`` event ends it with the
controller's message as the error; other events are log lines of it.
Event ids are derived from the deployment, reason and time, so redeliveries
are stored once and any order folds alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ledger.errors import Invalid
from ledger.events import MAX_NAME_LENGTH
from ledger.timestamps import format_timestamp, parse_timestamp
from senders.github import IgnoredDelivery, clean_name

#: The objects whose reconciliations are deployments; events of others are acknowledged.
DEPLOYED_KINDS = ("Kustomization", "HelmRelease")

#: ``info`` reasons that end a deployment with success.
SUCCEEDED = frozenset(
    {"ReconciliationSucceeded", "InstallSucceeded", "UpgradeSucceeded", "TestSucceeded"}
)
#: The ``info`` reason that starts one.
PROGRESSING = "Progressing"

_HEX = re.compile(r"[0-9a-f]{7,64}")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _time(value: Any) -> str | None:
    """An event's RFC 3339 time (Kubernetes gives whole seconds) in the hub's spelling."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return format_timestamp(parse_timestamp(value))
    except ValueError:
        return None


def meta_value(metadata: Mapping[str, Any], key: str) -> str | None:
    """``metadata[key]``, or the same key under an API group (``<group>/key``).

    notification-controller strips the group of the object's own keys before
    it forwards an event; the events Flux documents still show them.
    """
    value = _text(metadata.get(key))
    if value is not None:
        return value
    for name, found in sorted(metadata.items()):
        if isinstance(name, str) and name.endswith("/" + key) and _text(found):
            return _text(found)
    return None


def revision_parts(revision: str) -> dict[str, str]:
    """What a revision says: ``main@sha1:<sha>`` (and the older ``main/<sha>``) is a
    branch and a commit, ``<tag>@sha256:<digest>`` an OCI tag and digest, anything else
    (a chart version such as ``6.4.0``) a version."""
    ref, at, digest = revision.partition("@")
    if at:
        _, _, value = digest.rpartition(":")
        return {"branch": ref, "commit": value} if ref else {"commit": value}
    ref, slash, sha = revision.rpartition("/")
    if slash and _HEX.fullmatch(sha):
        return {"branch": ref, "commit": sha}
    if _HEX.fullmatch(revision) and len(revision) in (40, 64):
        return {"commit": revision}
    return {"version": revision}


def deployment_id_of(
    cluster: str | None, kind: str, namespace: str, name: str, revision: str, token: str | None
) -> str:
    """``flux-<name>-<hash>``: one deployment per object (in its cluster) and revision."""
    key = "\0".join([cluster or "", kind, namespace, name, revision, token or ""])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"flux-{name[: MAX_NAME_LENGTH - 30]}-{digest}"


def environment_of(metadata: Mapping[str, Any], namespace: str) -> str:
    """The alert's ``environment``/``env`` event metadata, else ``<cluster>/<namespace>``
    (with a ``cluster`` entry), else the object's namespace."""
    named = _text(metadata.get("environment")) or _text(metadata.get("env"))
    if named:
        return clean_name(named)
    cluster = _text(metadata.get("cluster"))
    return clean_name(f"{cluster}/{namespace}" if cluster else namespace)


def event_bodies(payload: Any) -> list[dict[str, Any]]:
    """Typed bodies for one Flux event, or :class:`IgnoredDelivery` saying why none."""
    if not isinstance(payload, dict):
        raise Invalid("a Flux event is a JSON object", {"_schema": ["Not an object."]})
    obj = payload.get("involvedObject")
    if not isinstance(obj, Mapping):
        raise Invalid(
            "a Flux event needs its involvedObject",
            {"involvedObject": ["Missing data for required field."]},
        )
    errors = {
        key: ["Missing data for required field."]
        for key in ("kind", "name")
        if not _text(obj.get(key))
    }
    if errors:
        raise Invalid("the involvedObject is incomplete", {"involvedObject": errors})
    kind, name = str(obj["kind"]).strip(), str(obj["name"]).strip()
    namespace = _text(obj.get("namespace")) or "default"
    if kind not in DEPLOYED_KINDS:
        raise IgnoredDelivery(
            f"{kind[:50]!r} events are not recorded; only {' and '.join(DEPLOYED_KINDS)}"
        )
    metadata = payload.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    revision = meta_value(metadata, "revision")
    if revision is None:
        raise IgnoredDelivery(f"the {kind} event names no revision, so it is no deployment of one")
    at = _time(payload.get("timestamp"))
    if at is None:
        raise Invalid("a Flux event needs its timestamp", {"timestamp": ["Not a valid datetime."]})
    severity = str(payload.get("severity") or "info").lower()
    reason = _text(payload.get("reason")) or severity
    message = _text(payload.get("message"))
    cluster = _text(metadata.get("cluster"))
    token = meta_value(metadata, "token")
    deployment_id = deployment_id_of(cluster, kind, namespace, name, revision, token)
    project = _text(metadata.get("project")) or name
    key = f"{deployment_id}-{clean_name(reason)[:60]}-{at}"
    parts = revision_parts(revision)
    app_version = meta_value(metadata, "app-version")
    common: dict[str, Any] = {
        "project": clean_name(project),
        "deployment_id": deployment_id,
        "timestamp": at,
        "revision": revision,
        "origin_revision": meta_value(metadata, "originRevision"),
        "reason": reason,
        "severity": severity,
        "reporting_controller": _text(payload.get("reportingController")),
        "object": f"{kind}/{namespace}/{name}",
        "version": parts.get("version") or app_version,
    }
    if severity == "error":
        outcome: str | None = "failure"
    elif reason in SUCCEEDED:
        outcome = "success"
    elif reason == PROGRESSING:
        outcome = "running"
    else:
        outcome = None
    if outcome is None:
        return [
            {
                **common,
                "type": "log_entry",
                "event_id": key,
                "level": "debug" if severity == "trace" else "info",
                "message": f"{reason}: {message}" if message else reason,
            }
        ]
    bodies: list[dict[str, Any]] = [
        {
            **common,
            "type": "deployment_started",
            "event_id": f"{key}-started",
            "status": "running",
            "started_at": at,
            "environment": environment_of(metadata, namespace),
            "branch": parts.get("branch"),
            "commit": parts.get("commit"),
            "workflow_name": clean_name(f"{kind} {namespace}/{name}"),
            "message": message if outcome == "running" else None,
        }
    ]
    if outcome != "running":
        bodies.append(
            {
                **common,
                "type": "deployment_completed",
                "event_id": key,
                "status": outcome,
                "completed_at": at,
                "error": (message or reason) if outcome == "failure" else None,
                "message": message if outcome == "success" else None,
            }
        )
    return [{k: v for k, v in body.items() if v is not None} for body in bodies]
