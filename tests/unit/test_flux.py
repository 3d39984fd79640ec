"""Flux notification-controller events: the documented example, reconstructed ones, any order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.flux import decode_event
from ledger.errors import Invalid, Malformed
from ledger.events import Event
from senders.flux import deployment_id_of, event_bodies, meta_value, revision_parts
from senders.github import IgnoredDelivery
from tests.conftest import ROOT
from tests.folding import views

FIXTURES = ROOT / "tests" / "fixtures" / "flux"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def deliver(payload: Any) -> list[Event]:
    return decode_event(json.dumps(payload).encode(), max_depth=32)


@pytest.mark.parametrize(
    ("revision", "parts"),
    [
        ("main@sha1:8e4c7f2a", {"branch": "main", "commit": "8e4c7f2a"}),
        (
            "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
            {"branch": "main", "commit": "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
        ),
        ("v1.4.0@sha256:abc123", {"branch": "v1.4.0", "commit": "abc123"}),
        ("sha256:abc123", {"version": "sha256:abc123"}),
        ("6.6.2", {"version": "6.6.2"}),
    ],
)
def test_revisions_say_branch_and_commit_or_version(revision: str, parts: dict[str, str]) -> None:
    assert revision_parts(revision) == parts


def test_metadata_is_read_with_or_without_its_api_group() -> None:
    assert meta_value({"revision": "a"}, "revision") == "a"
    assert meta_value({"kustomize.toolkit.fluxcd.io/revision": "b"}, "revision") == "b"
    assert meta_value({"summary": "x"}, "revision") is None


@pytest.mark.parametrize(
    "name", ["events-doc-kustomization-error.json", "providers-doc-generic.json"]
)
def test_the_documented_failed_reconciliation(name: str) -> None:
    events = deliver(fixture(name))
    assert [e.type for e in events] == ["deployment_started", "deployment_completed"]
    deployment_id = deployment_id_of(
        None,
        "Kustomization",
        "apps",
        "webapp",
        "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        None,
    )
    view = views([events])[deployment_id]
    assert deployment_id.startswith("flux-webapp-")
    assert (view["project"], view["status"], view["environment"]) == ("webapp", "failure", "apps")
    assert (
        view["error"]
        == "service/apps/webapp validation error: spec.type: Unsupported value: Ingress"
    )
    assert (view["branch"], view["commit"]) == ("main", "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1")
    assert view["completed_at"] == "2022-10-28T07:26:19.000Z"
    assert view["workflow_name"] == "Kustomization apps/webapp"


def test_both_documented_examples_are_the_same_event() -> None:
    one = deliver(fixture("events-doc-kustomization-error.json"))
    other = deliver(fixture("providers-doc-generic.json"))
    assert [e.dedup_key for e in one] == [e.dedup_key for e in other]


def test_a_kustomization_progressing_then_succeeded_in_its_environment() -> None:
    progressing = deliver(fixture("reconstructed-kustomization-progressing.json"))
    succeeded = deliver(fixture("reconstructed-kustomization-succeeded.json"))
    (deployment_id,) = {e.deployment_id for e in progressing + succeeded}
    view = views([progressing, succeeded])[deployment_id]
    assert (view["status"], view["environment"]) == ("success", "production")
    assert (view["started_at"], view["completed_at"], view["duration_ms"]) == (
        "2022-10-28T07:30:02.000Z",
        "2022-10-28T07:30:41.000Z",
        39000,
    )
    assert view["commit"] == "8e4c7f2a9d3b5e6f1a0c2b4d6e8f0a1b3c5d7e9f"
    assert view["message"] == "Reconciliation finished in 39.2s, next run in 10m0s"
    assert views([succeeded, progressing]) == views([progressing, succeeded])
    running = views([progressing])[deployment_id]
    assert running["status"] == "running"
    assert running["message"] == "Service/apps/webapp configured\nDeployment/apps/webapp configured"


def test_helm_releases_are_deployments_of_a_chart_version_and_values() -> None:
    ok = deliver(fixture("reconstructed-helmrelease-upgrade-succeeded.json"))
    failed = deliver(fixture("reconstructed-helmrelease-upgrade-failed.json"))
    assert ok[0].deployment_id != failed[0].deployment_id
    good = views([ok])[ok[0].deployment_id]
    assert (good["status"], good["version"], good["environment"]) == (
        "success",
        "6.6.2",
        "prod-eu/apps",
    )
    bad = views([failed])[failed[0].deployment_id]
    assert (bad["status"], bad["version"]) == ("failure", "6.7.0")
    assert bad["error"].endswith("context deadline exceeded")
    values_changed = fixture("reconstructed-helmrelease-upgrade-succeeded.json")
    values_changed["metadata"]["token"] = "sha256:0000"
    assert deliver(values_changed)[0].deployment_id != ok[0].deployment_id


def test_the_alerts_project_metadata_names_the_project() -> None:
    payload = fixture("reconstructed-kustomization-succeeded.json")
    payload["metadata"]["project"] = "web-shop"
    assert {e.project for e in deliver(payload)} == {"web-shop"}


def test_other_info_events_are_log_lines_of_the_deployment() -> None:
    payload = fixture("reconstructed-helmrelease-upgrade-succeeded.json")
    payload.update(
        reason="RollbackSucceeded", message="Helm rollback to previous release succeeded"
    )
    (line,) = deliver(payload)
    assert (line.type, line.payload["level"]) == ("log_entry", "info")
    assert (
        line.payload["message"] == "RollbackSucceeded: Helm rollback to previous release succeeded"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"involvedObject": {"kind": "GitRepository", "name": "webapp"}}, "'GitRepository' events"),
        ({"metadata": {"summary": "no revision here"}}, "names no revision"),
    ],
)
def test_other_kinds_and_events_without_a_revision_are_ignored(
    change: dict[str, Any], why: str
) -> None:
    payload = {**fixture("reconstructed-kustomization-succeeded.json"), **change}
    with pytest.raises(IgnoredDelivery, match=why):
        deliver(payload)
    with pytest.raises(IgnoredDelivery, match="'GitRepository' events"):
        deliver(fixture("reconstructed-gitrepository-artifact.json"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "JSON object"),
        ({"severity": "info"}, "involvedObject"),
        ({"involvedObject": {"kind": "Kustomization"}}, "incomplete"),
    ],
)
def test_malformed_events_are_refused(payload: Any, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        event_bodies(payload)
    no_time = fixture("reconstructed-kustomization-succeeded.json")
    no_time["timestamp"] = "soon"
    with pytest.raises(Invalid, match="timestamp"):
        deliver(no_time)
    with pytest.raises(Malformed):
        decode_event(b"{", max_depth=32)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_failure_then_a_fix_in_any_order(data: st.DataObject) -> None:
    progressing = fixture("reconstructed-kustomization-progressing.json")
    failed = fixture("reconstructed-kustomization-succeeded.json")
    failed.update(
        severity="error",
        reason="HealthCheckFailed",
        message="timeout waiting for: [Deployment/apps/webapp status: 'InProgress']",
        timestamp="2022-10-28T07:35:02Z",
    )
    recovered = fixture("reconstructed-kustomization-succeeded.json")
    recovered["timestamp"] = "2022-10-28T07:40:02Z"
    deliveries = [deliver(p) for p in (progressing, failed, recovered)]
    expected = views(deliveries)
    (view,) = expected.values()
    assert view["status"] == "success"  # the health check passed on the next attempt
    order = data.draw(
        st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries))))
    )
    assert views(order) == expected
