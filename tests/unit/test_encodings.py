"""A coding of quality 0 is refused (RFC 9110 § 12.5.3): it leaves ``Accept-Encoding``."""

from __future__ import annotations

import pytest

from app.encodings import accepted_codings


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("gzip, deflate, br", "gzip, deflate, br"),  # nothing refused: as it came
        ("gzip;q=0.5, br;q=0.9", "gzip;q=0.5, br;q=0.9"),
        ("gzip;q=abc", "gzip;q=abc"),  # not a quality: not a refusal either
        ("gzip;q=0", ""),
        ("GZIP;Q=0, br", "br"),
        ("br;q=1.0, gzip;q=0", "br"),
        ("gzip;q=0.000, br;q=0.001", "br;q=0.001"),
        ("gzip;q=0, br;q=0.5, deflate", "deflate, br;q=0.5"),
        ("*;q=0", ""),
        ("identity;q=0, gzip", "gzip"),
    ],
)
def test_refused_codings_leave_the_header(header: str, kept: str) -> None:
    assert accepted_codings(header) == kept
