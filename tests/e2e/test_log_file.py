"""``logs.txt`` from the real hub under gunicorn: sent as it is read, compressed as it goes."""

from __future__ import annotations

import http.client

import brotli
import pytest

from tests.e2e.server import HubServer
from tests.e2e.wsclient import post

pytestmark = pytest.mark.e2e

LINES = 30_000


def test_a_long_log_arrives_whole_in_chunks_plain_and_compressed(
    hub_server: HubServer,
) -> None:
    for chunk in range(3):
        text = "\n".join(
            f"line {n} \x1b[32mok\x1b[0m" for n in range(chunk * 10_000, (chunk + 1) * 10_000)
        )
        post(
            hub_server,
            {"type": "log_entry", "project": "p", "deployment_id": "d", "message": text},
        )
    for coding in (None, "br"):
        connection = http.client.HTTPConnection("127.0.0.1", hub_server.port, timeout=60)
        headers = {"Accept-Encoding": coding} if coding else {}
        connection.request("GET", "/project-dashboard/api/deployments/d/logs.txt", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"  # no length: sent as read
        assert response.getheader("Content-Disposition") == 'attachment; filename="d.log"'
        assert response.getheader("Content-Encoding") == coding
        body = response.read()
        connection.close()
        text = (brotli.decompress(body) if coding else body).decode()
        rows = text.splitlines()
        assert len(rows) == LINES
        assert rows[0].endswith(" INFO    line 0 ok")
        assert rows[-1].endswith(f" INFO    line {LINES - 1} ok")
