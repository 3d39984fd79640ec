"""Event ids parsed by string tests, and the current time spelled once per millisecond."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

import ledger.timestamps
from ledger.ids import make_event_id, parse_event_id
from ledger.timestamps import format_timestamp, now_timestamp

MAX_EPOCH = 10**13 - 1
MAX_SEQ = 10**12 - 1
#: ASCII digits to digits of other scripts, which ``str.isdigit`` accepts too.
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
SPELLING = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize(
    ("epoch", "seq"),
    [(0, 0), (0, 1), (1, 0), (MAX_EPOCH, 0), (0, MAX_SEQ), (MAX_EPOCH, MAX_SEQ)],
)
def test_issued_ids_round_trip_at_the_edges_of_each_width(epoch: int, seq: int) -> None:
    text = make_event_id(epoch, seq)
    assert len(text) == 26
    assert parse_event_id(text) == (epoch, seq)


def test_a_typical_id_parses() -> None:
    assert parse_event_id("1764407280261-000000000042") == (1764407280261, 42)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "1764407280261",
        "1764407280261-",
        "1764407280261-00000000042",  # seq one digit short
        "1764407280261-0000000000042",  # seq one digit long
        "176440728026-0000000000042",  # epoch short, seq long: still 26 characters
        "17644072802611-00000000042",  # epoch long, seq short: still 26 characters
        "1764407280261_000000000042",
        "1764407280261:000000000042",
        "1764407280261 000000000042",
        "1764407280261—000000000042",  # em dash
        "1764407280261-00000000004-",
        "+764407280261-000000000042",
        "-764407280261-000000000042",
        "1764407280261-+00000000042",
        "1764407280261--00000000042",
        " 764407280261-000000000042",
        "1764407280261-00000000042 ",
        "1764407280261-000000000042\n",
        "1_64407280261-000000000042",  # int() would accept the underscore
        "1764407280261-0_0000000042",
        "0x64407280261-000000000042",
        "1764407280261-00000000004a",
        "1764407280261-000000000042".translate(FULLWIDTH),
        "1764407280261-000000000042".translate(ARABIC_INDIC),
        "1764407280261-00000000004" + "\u0662",  # one Arabic-Indic digit at the end
        "176440728026¹-000000000042",  # superscript one: str.isdigit() says yes
        "1764407280261-000000000042".replace("-", "\u2011"),  # non-breaking hyphen
    ],
    ids=repr,
)
def test_anything_but_13_ascii_digits_dash_12_ascii_digits_is_rejected(text: str) -> None:
    assert parse_event_id(text) is None


@pytest.mark.parametrize("digits", [FULLWIDTH, ARABIC_INDIC], ids=["fullwidth", "arabic-indic"])
def test_non_ascii_digits_would_pass_isdigit_and_int_yet_are_rejected(
    digits: dict[int, int],
) -> None:
    """Why the ASCII test matters: ``int`` reads these digits as the ASCII ones."""
    text = make_event_id(1764407280261, 42).translate(digits)
    epoch, seq = text[:13], text[14:]
    assert epoch.isdigit()
    assert seq.isdigit()
    assert (int(epoch), int(seq)) == (1764407280261, 42)
    assert parse_event_id(text) is None


def at(nanoseconds: int) -> str:
    """The spelling of an instant, computed exactly (integer arithmetic, no float)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=nanoseconds // 1_000_000)
    return format_timestamp(moment)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the nanoseconds ``now_timestamp`` reads; starts from a cleared cache."""
    now = [0]
    monkeypatch.setattr(ledger.timestamps, "time", SimpleNamespace(time_ns=lambda: now[0]))
    monkeypatch.setattr(ledger.timestamps, "_now", (-1, ""))

    def set_clock(nanoseconds: int) -> None:
        now[0] = nanoseconds

    return set_clock


def test_now_is_spelled_like_format_timestamp_of_the_current_time() -> None:
    before = format_timestamp(datetime.now(UTC))
    text = now_timestamp()
    after = format_timestamp(datetime.now(UTC))
    assert SPELLING.fullmatch(text)
    assert before <= text <= after


@pytest.mark.parametrize(
    ("nanoseconds", "spelled"),
    [
        (1764407280261000000, "2025-11-29T09:08:00.261Z"),
        (1764407280002000000, "2025-11-29T09:08:00.002Z"),  # int(ns / 1e9 * 1000) gives .001
        (1764407280005000000, "2025-11-29T09:08:00.005Z"),
        (1764407280261999999, "2025-11-29T09:08:00.261Z"),  # truncated, never rounded up
        (1764407280999999999, "2025-11-29T09:08:00.999Z"),  # ns / 1e9 rounds to the next second
        (1764407280000999999, "2025-11-29T09:08:00.000Z"),
        (1764407280000000000, "2025-11-29T09:08:00.000Z"),
        (1_000_000, "1970-01-01T00:00:00.001Z"),
        (253402300799999000000, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_now_spells_the_exact_millisecond_without_float_rounding(
    clock: Callable[[int], None], nanoseconds: int, spelled: str
) -> None:
    clock(nanoseconds)
    assert now_timestamp() == spelled == at(nanoseconds)


def test_now_in_the_first_millisecond_of_the_epoch_is_spelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh process whose clock reads under 1 ms since 1970 (ledger/timestamps.py, ``_now``)."""
    monkeypatch.setattr(ledger.timestamps, "time", SimpleNamespace(time_ns=lambda: 999_999))
    monkeypatch.setattr(ledger.timestamps, "_now", (-1, ""))  # as a fresh process has it
    assert now_timestamp() == "1970-01-01T00:00:00.000Z"


def test_calls_within_one_millisecond_return_the_same_text(clock: Callable[[int], None]) -> None:
    base = 1764407280261000000
    spelled = set()
    for offset in (0, 1, 499_999, 500_000, 999_999):
        clock(base + offset)
        spelled.add(now_timestamp())
    assert spelled == {"2025-11-29T09:08:00.261Z"}


def test_a_new_millisecond_is_spelled_anew(clock: Callable[[int], None]) -> None:
    """The one-entry cache must not answer for a different millisecond, earlier or later."""
    base = 1764407280261000000
    for nanoseconds in (base, base + 1_000_000, base, base + 1_000_000_000, base - 1, 0, base):
        clock(nanoseconds)
        assert now_timestamp() == at(nanoseconds)


def test_every_millisecond_of_a_second_is_spelled_in_order(clock: Callable[[int], None]) -> None:
    spelled = []
    for millis in range(1764407280000, 1764407281001):
        clock(millis * 1_000_000 + 999_999)
        spelled.append(now_timestamp())
    assert spelled == [at(millis * 1_000_000) for millis in range(1764407280000, 1764407281001)]
    assert spelled == sorted(set(spelled))


def test_now_never_goes_backwards_across_many_calls() -> None:
    previous = now_timestamp()
    for _ in range(20_000):
        current = now_timestamp()
        assert current >= previous
        previous = current
