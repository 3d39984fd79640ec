"""The operator commands (``flask --app server.operations hub ...``) on real stores.

SQLite files and a real ``redis-server``; the commands run through Flask's CLI
runner with the ``HUB_*`` settings a hub would have.  The end-to-end proof
against a serving hub is ``tests/e2e/test_operations.py``.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from click.testing import Result

from app.ingest import load_one
from ledger.ids import parse_event_id
from server.operations import create_app
from storage.factory import create_store
from storage.store import Batch, Store
from storage.url import StoreURL
from tests.redis_server import RedisServer


def hub(monkeypatch: pytest.MonkeyPatch, store_url: str, *args: str) -> Result:
    for name in ("HUB_BROKER_URL", "HUB_RETENTION_DAYS", "HUB_RETENTION_MAX_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUB_STORE_URL", store_url)
    return create_app().test_cli_runner().invoke(args=["hub", *args])


def fill(store: Store, deployments: int, prefix: str = "d") -> list[str]:
    """Each deployment: started, a step, a log line, finished. Returns the ids."""
    ids: list[str] = []
    for n in range(deployments):
        key = f"{prefix}{n}"
        bodies = [
            {"type": "deployment_started", "deployment_id": key},
            {"type": "step_started", "deployment_id": key, "job": "build", "step": "compile"},
            {"type": "log_entry", "deployment_id": key, "job": "build", "message": f"line {n}"},
            {
                "type": "step_completed",
                "deployment_id": key,
                "job": "build",
                "step": "compile",
                "status": "success",
            },
            {"type": "deployment_completed", "deployment_id": key, "status": "success"},
        ]
        events = [
            load_one(
                {"project": "web", "timestamp": f"2026-12-01T10:00:0{i}Z", **body}, "deployment"
            )
            for i, body in enumerate(bodies)
        ]
        ids += store.append(Batch(events)).ids
    return ids


def sqlite_store(path: Path, deployments: int = 0) -> list[str]:
    store = create_store(StoreURL.parse(f"sqlite:///{path}"))
    try:
        return fill(store, deployments)
    finally:
        store.close()


def checked_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """A file of three deployments that ``hub check`` finds sound: its URL and event ids."""
    ids = sqlite_store(path, 3)
    url = f"sqlite:///{path}"
    assert "ok: 15 events, 3 deployments checked" in hub(monkeypatch, url, "check").output
    return url, ids


def all_events(url: str) -> list[dict[str, object]]:
    store = create_store(StoreURL.parse(url))
    try:
        page = store.events(project=None, deployment_id=None, since=None, limit=100_000)
        return page.items
    finally:
        store.close()


def seqs(events: list[dict[str, object]]) -> list[int]:
    return [parse_event_id(str(event["id"]))[1] for event in events]  # type: ignore[index]


# -- SQLite ------------------------------------------------------------------------------


def test_backup_then_restore_into_a_fresh_store_keeps_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sqlite_store(tmp_path / "hub.db", 20)
    done = hub(monkeypatch, f"sqlite:///{tmp_path / 'hub.db'}", "backup", str(tmp_path / "b.db"))
    assert done.exit_code == 0, done.output
    assert f"backed up {len(ids)} events (up to {ids[-1]})" in done.output

    restored = f"sqlite:///{tmp_path / 'fresh' / 'hub.db'}"
    done = hub(monkeypatch, restored, "restore", str(tmp_path / "b.db"))
    assert done.exit_code == 0, done.output
    assert f"restored {len(ids)} events" in done.output
    before, after = all_events(f"sqlite:///{tmp_path / 'hub.db'}"), all_events(restored)
    assert seqs(after) == seqs(before) == [parse_event_id(i)[1] for i in ids]  # type: ignore[index]
    strip = [{k: v for k, v in e.items() if k != "id"} for e in before]
    assert [{k: v for k, v in e.items() if k != "id"} for e in after] == strip
    # a new epoch: ids of the backup's history no longer resume silently
    assert parse_event_id(str(after[0]["id"]))[0] > parse_event_id(ids[0])[0]  # type: ignore[index]
    assert hub(monkeypatch, restored, "check").exit_code == 0


def test_a_backup_written_while_events_arrive_holds_everything_acknowledged_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sqlite_store(tmp_path / "hub.db", 30)
    writer = create_store(StoreURL.parse(f"sqlite:///{tmp_path / 'hub.db'}"))
    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set() and n < 500:
            fill(writer, 1, prefix=f"live{n}-")
            n += 1

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        done = hub(
            monkeypatch, f"sqlite:///{tmp_path / 'hub.db'}", "backup", str(tmp_path / "b.db")
        )
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert done.exit_code == 0, done.output
    kept = set(seqs(all_events(f"sqlite:///{tmp_path / 'b.db'}")))
    assert {parse_event_id(i)[1] for i in before} <= kept  # type: ignore[index]
    assert hub(monkeypatch, f"sqlite:///{tmp_path / 'b.db'}", "check").exit_code == 0


def test_backup_refuses_to_overwrite_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store(tmp_path / "hub.db", 2)
    (tmp_path / "b.db").write_text("precious")
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    done = hub(monkeypatch, url, "backup", str(tmp_path / "b.db"))
    assert done.exit_code == 1
    assert "exists: name another file, or give --overwrite" in done.output
    assert (tmp_path / "b.db").read_text() == "precious"
    assert hub(monkeypatch, url, "backup", "--overwrite", str(tmp_path / "b.db")).exit_code == 0
    assert not list(tmp_path.glob(".*partial"))


def test_restore_refuses_a_store_that_holds_events_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store(tmp_path / "hub.db", 3)
    sqlite_store(tmp_path / "other.db", 1)
    hub(monkeypatch, f"sqlite:///{tmp_path / 'other.db'}", "backup", str(tmp_path / "b.db"))
    before = all_events(f"sqlite:///{tmp_path / 'hub.db'}")
    done = hub(monkeypatch, f"sqlite:///{tmp_path / 'hub.db'}", "restore", str(tmp_path / "b.db"))
    assert done.exit_code == 1
    assert "holds 15 events: restore into a fresh store" in done.output
    assert all_events(f"sqlite:///{tmp_path / 'hub.db'}") == before


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "does not exist"),
        (b"not a database at all, just text" * 200, "is not a hub store"),
        ("sqlite-but-not-hub", "is not a hub store"),
    ],
)
def test_restore_refuses_what_is_no_hub_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | str | None, said: str
) -> None:
    source = tmp_path / "b.db"
    if content == "sqlite-but-not-hub":
        sqlite3.connect(source).execute("CREATE TABLE t (x)").connection.commit()
    elif isinstance(content, bytes):
        source.write_bytes(content)
    target = tmp_path / "fresh.db"
    done = hub(monkeypatch, f"sqlite:///{target}", "restore", str(source))
    assert done.exit_code == 1
    assert said in done.output
    assert not target.exists()


def test_check_finds_a_view_that_no_longer_matches_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ids = checked_file(tmp_path / "hub.db", monkeypatch)
    step_completed = parse_event_id(ids[3])[1]  # type: ignore[index]
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute("DELETE FROM events WHERE seq = ?", (step_completed,))
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 1
    assert "problem: deployment 'd0': the stored view differs from its 4 events in" in done.output
    assert "1 problems: 14 events, 3 deployments checked" in done.output


def test_check_reads_a_damaged_file_as_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store(tmp_path / "hub.db", 40)
    raw = bytearray((tmp_path / "hub.db").read_bytes())
    for offset in range(8192 * 2, len(raw), 8192):  # scribble on every page but the first two
        raw[offset + 100 : offset + 200] = b"\xff" * 100
    (tmp_path / "hub.db").write_bytes(bytes(raw))
    for sidecar in ("-wal", "-shm"):
        (tmp_path / f"hub.db{sidecar}").unlink(missing_ok=True)
    done = hub(monkeypatch, f"sqlite:///{tmp_path / 'hub.db'}", "check")
    assert done.exit_code == 1
    assert "problem: " in done.output
    assert "problems: the file is damaged" in done.output
    assert "Traceback" not in done.output


def test_prune_removes_whole_deployments_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store(tmp_path / "hub.db", 10)
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    done = hub(monkeypatch, url, "prune", "--max-events", "12")
    assert done.exit_code == 0, done.output
    removed = int(done.output.split()[1])
    assert removed % 5 == 0  # whole deployments of five events
    assert removed >= 50 - 12 - 4
    left = all_events(url)
    assert len(left) == 50 - removed
    assert {e["deployment_id"] for e in left} == {f"d{n}" for n in range(10 - len(left) // 5, 10)}
    assert hub(monkeypatch, url, "check").exit_code == 0


def test_prune_without_limits_says_how_to_set_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_store(tmp_path / "hub.db", 1)
    monkeypatch.setenv("HUB_RETENTION_DAYS", "0")
    monkeypatch.setenv("HUB_RETENTION_MAX_EVENTS", "0")
    monkeypatch.setenv("HUB_STORE_URL", f"sqlite:///{tmp_path / 'hub.db'}")
    done = create_app().test_cli_runner().invoke(args=["hub", "prune"])
    assert done.exit_code == 0
    assert "nothing to prune" in done.output
    assert len(all_events(f"sqlite:///{tmp_path / 'hub.db'}")) == 5


def test_bad_settings_are_named_with_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_RETENTION_DAYS", "forever")
    monkeypatch.setenv("HUB_STORE_URL", f"sqlite:///{tmp_path / 'hub.db'}")
    done = create_app().test_cli_runner().invoke(args=["hub", "check"])
    assert done.exit_code == 2
    assert "hub configuration error: HUB_RETENTION_DAYS='forever' is not valid" in done.output


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_memory_keeps_nothing_to_back_up_or_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    done = hub(monkeypatch, "memory://", command, str(tmp_path / "b.db"))
    assert done.exit_code == 1
    assert "HUB_STORE_URL=memory:// keeps nothing" in done.output


def test_a_usage_mistake_is_exit_status_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = hub(monkeypatch, f"sqlite:///{tmp_path / 'hub.db'}", "prune", "--max-events", "-3")
    assert done.exit_code == 2
    assert "--max-events" in done.output


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.redis
def test_a_redis_backup_started_as_a_new_server_holds_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    url = redis_server.url(prefix=f"ops-{uuid.uuid4().hex}")
    store = create_store(StoreURL.parse(url))
    try:
        ids = fill(store, 12)
        stop = threading.Event()
        thread = threading.Thread(
            target=lambda: [fill(store, 1, f"live{n}-") for n in range(200) if not stop.is_set()]
        )
        thread.start()
        try:
            done = hub(monkeypatch, url, "backup", str(tmp_path / "redis.rdb"))
        finally:
            stop.set()
            thread.join()
    finally:
        store.close()
    assert done.exit_code == 0, done.output
    assert "backed up Redis (events up to" in done.output
    assert (tmp_path / "redis.rdb").read_bytes().startswith(b"REDIS")

    restored = RedisServer(tmp_path / "restored")
    shutil.copy(tmp_path / "redis.rdb", restored.workdir / "dump.rdb")
    restored.start()
    try:
        again = url.replace(f":{redis_server.port}/", f":{restored.port}/")
        assert set(ids) <= {str(e["id"]) for e in all_events(again)}
        checked = hub(monkeypatch, again, "check")
        assert checked.exit_code == 0, checked.output
    finally:
        restored.stop()


@pytest.mark.redis
def test_check_on_redis_warns_about_settings_that_lose_events(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    url = redis_server.url(prefix=f"ops-{uuid.uuid4().hex}")
    store = create_store(StoreURL.parse(url))
    fill(store, 2)
    store.close()
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 0, done.output
    assert "warning: appendonly is off" in done.output  # the test server runs without it
    assert "ok: 10 events, 2 deployments checked" in done.output


@pytest.mark.redis
def test_check_on_redis_finds_a_view_that_does_not_match(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    prefix = f"ops-{uuid.uuid4().hex}"
    url = redis_server.url(prefix=prefix)
    store = create_store(StoreURL.parse(url))
    ids = fill(store, 2)
    store.close()
    client = redis_server.client()
    (replay,) = client.keys(f"{prefix}*de:d1")
    step_completed = parse_event_id(ids[8])[1]  # type: ignore[index]
    assert client.lrem(replay, 1, step_completed) == 1
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 1
    assert "problem: deployment 'd1': the stored view differs" in done.output


@pytest.mark.redis
def test_restore_into_redis_explains_the_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    done = hub(monkeypatch, redis_server.url(prefix="ops-x"), "restore", str(tmp_path / "r.rdb"))
    assert done.exit_code == 1
    assert "a Redis store is restored by Redis" in done.output


def test_check_finds_aggregates_that_drifted_from_the_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = checked_file(tmp_path / "hub.db", monkeypatch)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute("UPDATE aggregates SET n = n + 1 WHERE grp = 'projects'")
        db.execute("DELETE FROM outage_days WHERE scope = 'all'")
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 1
    assert "problem: aggregate drifted from the views: projects " in done.output
    assert "kept 2, counted 1" in done.output or "kept 4, counted 3" in done.output
    assert "problem: aggregate drifted from the views: outages of " in done.output


def test_check_finds_step_runs_that_drifted_from_the_folds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = checked_file(tmp_path / "hub.db", monkeypatch)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute(
            "UPDATE step_runs SET steps = replace(steps, 'success', 'failure') "
            "WHERE deployment_id = 'd1'"
        )
        db.execute("DELETE FROM step_runs WHERE deployment_id = 'd2'")
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 1
    assert (
        "problem: step runs of deployment 'd1' drifted from its fold: "
        "kept build/compile failure, folded build/compile success"
    ) in done.output
    assert (
        "problem: step runs of deployment 'd2' drifted from its fold: "
        "kept none, folded build/compile success"
    ) in done.output
    assert "2 problems: 15 events, 3 deployments checked" in done.output


@pytest.mark.redis
def test_check_on_redis_finds_aggregates_that_drifted_from_the_views(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    prefix = f"ops-{uuid.uuid4().hex}"
    url = redis_server.url(prefix=prefix)
    store = create_store(StoreURL.parse(url))
    fill(store, 3)
    store.close()
    assert "ok: 15 events, 3 deployments checked" in hub(monkeypatch, url, "check").output
    client = redis_server.client()
    (field, _), *_ = client.hgetall(f"{prefix}:agg:projects").items()
    client.hincrby(f"{prefix}:agg:projects", field, 1)
    for key in client.scan_iter(match=f"{prefix}:outday:*"):  # summed up by the first check
        for day in client.hkeys(key):
            if day != b"#v":
                client.hset(key, day, "[null,null,[],null]")
    done = hub(monkeypatch, url, "check")
    assert done.exit_code == 1
    assert "problem: aggregate drifted from the views: projects " in done.output
    assert "problem: aggregate drifted from the views: outages of " in done.output
