"""The plain-text line of a saved log (``ledger.logs.plain_line``)."""

from __future__ import annotations

from ledger.logs import LogLine, log_row, plain_line


def test_a_line_names_its_place_only_when_it_has_one() -> None:
    at = "2026-03-01T10:00:00.000Z"
    assert plain_line(log_row(1, LogLine(None, None, "debug", at, "a"), "e")) == f"{at} DEBUG   a"
    assert plain_line(log_row(2, LogLine("build", None, "info", at, "b"), "e")) == (
        f"{at} INFO    [build] b"
    )


def test_escapes_go_and_everything_else_stays_as_sent() -> None:
    at = "2026-03-01T10:00:00.000Z"
    text = "\x1b[1;31mFAIL\x1b[0m \x1b]0;title\x07<script>x</script>"
    line = log_row(3, LogLine("j", "s", "error", at, text), "e")
    assert plain_line(line) == f"{at} ERROR   [j / s] FAIL <script>x</script>"
