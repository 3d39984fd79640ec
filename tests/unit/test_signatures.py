"""Failure signatures: details vary, the failure stays one; different failures stay apart."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.signatures import MAX_PATTERN, normalise, signature
from ledger.timestamps import format_timestamp


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            "2024-03-02T10:11:12.123Z ERROR connect ECONNREFUSED 127.0.0.1:5432",
            "2024-05-07T22:01:09.004Z ERROR connect ECONNREFUSED 10.1.4.7:6543",
        ),
        ("KeyError: 'user_42'", "KeyError: 'api-token'"),
        (
            "request 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed with HTTP 503 after 2m30s",
            "request 9b2e0c1a-0d3f-4e5b-8a7c-6f5e4d3c2b1a failed with HTTP 502 after 12.5s",
        ),
        (
            "can't open /tmp/tmpab12cd/build.log: No such file or directory",
            "can't open /tmp/tmp_zz91/other.log: No such file or directory",
        ),
        ("panic: nil map write at 0xc000123abc", "panic: nil map write at 0xc0004f0010"),
        ("commit a1b2c3d4e5f6 not found", "commit 0f9e8d7c6b5a4d3c2b1a not found"),
        ("\x1b[31mError:\x1b[0m build failed", "Error: build failed"),
        ("##[error]Process completed with exit code 1.", "Process completed with exit code 2."),
        ("[12:01:02] step 3 of 7 timed out", "[23:59:59] step 4 of 7 timed out"),
        (
            "错误：部署失败，无法连接到服务器 10.0.0.5:22",
            "错误：部署失败，无法连接到服务器 10.0.0.9:2222",
        ),
        ("Cannot find module “left-pad”", "Cannot find module “right-pad”"),
        ("--- FAIL: TestParse (0.00s)", "--- FAIL: TestParse (1.31s)"),
        ("took 300 ms to fail", "took 4 seconds to fail"),
    ],
)
def test_details_do_not_change_a_signature(one: str, other: str) -> None:
    assert normalise(one) == normalise(other)
    assert signature(one) == signature(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Error: Cannot find module 'x'", "Error: Cannot resolve host 'x'"),
        ("KeyError: 'a'", "ValueError: 'a'"),
        ("部署失败", "构建失败"),
        ("open /etc/app.conf: permission denied", "open /etc/app.conf: no such file"),
        ("error[E0425]: cannot find value", "error[E0433]: cannot find value"),
        ("--- FAIL: TestParse (0.00s)", "--- FAIL: TestFormat (0.00s)"),
        ("x86_64 build broke", "arm64 build broke"),
        ("migration 0042_users failed", "migration 0043_orders failed"),
    ],
)
def test_different_failures_get_different_signatures(one: str, other: str) -> None:
    assert signature(one) != signature(other)


def test_a_signature_is_short_and_the_pattern_bounded() -> None:
    assert len(signature("anything")) == 16
    assert len(normalise("word " * 200)) <= MAX_PATTERN


def test_words_are_kept_and_details_become_placeholders() -> None:
    assert normalise("2024-03-02T10:11:12Z KeyError: 'x' at 10.0.0.1:80 after 3s") == (
        "keyerror: <value> at <ip>:<port> after <duration>"
    )


# -- hypothesis: vary only the volatile parts ---------------------------------------------

_SAFE = string.ascii_letters + string.digits + " _-./=+"
uuids = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
hexes = st.text("0123456789abcdef", min_size=7, max_size=40).filter(
    lambda s: any(c in "abcdef" for c in s)
) | st.integers(min_value=0).map(hex)
numbers = st.integers(min_value=0, max_value=10**15).map(str) | st.builds(
    "{}.{}".format, st.integers(0, 10**6), st.integers(0, 10**6)
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(format_timestamp)
clocks = st.times().map(lambda t: t.strftime("%H:%M:%S"))
durations = (
    st.builds(
        "{}{}{}".format,
        numbers,
        st.sampled_from(["", " "]),
        st.sampled_from(["ms", "s", "sec", "seconds", "m", "min", "minutes", "h", "hours"]),
    )
    | st.builds("{}m{}s".format, st.integers(0, 999), st.integers(0, 59))
    | st.builds("{}h{}m{}s".format, st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
)
temps = st.builds(
    "{}/{}/{}".format,
    st.sampled_from(["/tmp", "/var/folders/x1", "/home/runner/_work/_temp", "/private/tmp"]),  # noqa: S108
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=20),
    st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20),
)
ips = st.ip_addresses(v=4).map(str)
ports = st.integers(1, 65535).map(str)
quoted = st.text(_SAFE + "äöü中文", max_size=30).map(lambda v: f"'{v}'") | st.text(
    _SAFE, max_size=30
).map(lambda v: f'"{v}"')

TEMPLATES = [
    ("Error: request {} to {}:{} failed after {}", [uuids, ips, ports, durations]),
    ("{} FATAL worker {} crashed at {} reading {}", [times, numbers, hexes, temps]),
    ("KeyError: {} in job {}", [quoted, numbers]),
    (
        "[{}] migration {} failed: relation {} already exists (took {})",
        [clocks, numbers, quoted, durations],
    ),
    ("错误：部署 {} 失败，无法连接 {}:{}", [numbers, ips, ports]),
    (
        "fatal: unable to access 'https://github.com/acme/app.git/': "
        "Failed to connect to localhost port {} after {}",
        [ports, durations],
    ),
    ("\x1b[1;31m{} ERROR\x1b[0m commit {} of build #{} not found", [times, hexes, numbers]),
]


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    data=st.data(),
)
def test_varying_only_the_details_never_changes_a_signature(
    template: tuple[str, list[st.SearchStrategy[str]]], data: st.DataObject
) -> None:
    text, slots = template
    one = text.format(*(data.draw(slot) for slot in slots))
    other = text.format(*(data.draw(slot) for slot in slots))
    assert normalise(one) == normalise(other), (one, other)


def test_the_templates_are_different_failures() -> None:
    filled = {text.format(*(["1"] * len(slots))) for text, slots in TEMPLATES}
    assert len({signature(text) for text in filled}) == len(TEMPLATES)
