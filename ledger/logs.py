"""Which events carry log lines, and the shapes a log line is read back in."""

from __future__ import annotations

from typing import NamedTuple, TypedDict

from ledger.ansi import strip_ansi
from ledger.events import PROJECT_ONLY_TYPES, Event


class LogLine(NamedTuple):
    """One line of a deployment's log, as stored beside the view."""

    job: str | None
    step: str | None
    level: str
    timestamp: str
    text: str


def log_lines_of(event: Event) -> list[LogLine]:
    """The log lines an event carries, one per line of text.

    A ``log_entry``'s message, any other event's ``logs`` and its ``error`` (at
    level ``error``) all become lines.  Project notes carry none, and neither
    does an event whose lines its companions carry (:mod:`ledger.companions`).
    """
    if event.type in PROJECT_ONLY_TYPES or event.lines_follow:
        return []
    payload = event.payload
    if event.type == "log_entry":
        texts = [(payload.get("level") or "info", payload.get("message") or payload.get("logs"))]
    else:
        texts = [("info", payload.get("logs")), ("error", payload.get("error"))]
    return [
        LogLine(payload.get("job"), payload.get("step"), level, event.timestamp, line)
        for level, text in texts
        if text
        for line in str(text).splitlines() or [""]
    ]


class LogRow(TypedDict):
    id: str
    job: str | None
    step: str | None
    level: str
    timestamp: str
    message: str
    event_id: str


def log_row(line_id: int, line: LogLine, event_id: str) -> LogRow:
    """A line as ``GET /api/deployments/<id>/logs`` serves it."""
    return {
        "id": str(line_id),
        "job": line.job,
        "step": line.step,
        "level": line.level,
        "timestamp": line.timestamp,
        "message": line.text,
        "event_id": event_id,
    }


def plain_line(row: LogRow) -> str:
    """A line as ``GET /api/deployments/<id>/logs.txt`` writes it, without its newline:
    ``<timestamp> <LEVEL> [<job> / <step>] <text>``, the level padded to one width and
    the place left out when the line names none.

    Escape codes are taken out of the text: a saved log is read in editors, not
    terminals.  Names hold none (validation refuses control characters in them).
    """
    place = " / ".join(name for name in (row["job"], row["step"]) if name is not None)
    where = f"[{place}] " if place else ""
    return f"{row['timestamp']} {row['level'].upper():<7} {where}{strip_ansi(row['message'])}"
