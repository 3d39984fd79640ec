"""How events and deployments look in a terminal: one line per event, a tree per deployment.

Colour follows the usual conventions: only when writing to a terminal (or
when asked), never when ``NO_COLOR`` is set (https://no-color.org).  Every
text a sender supplied (names, errors, messages, log lines) goes through
``hubctl.terminal`` first: it keeps the pipeline's own colours (SGR) when
colour is on and drops every other escape sequence and control character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TextIO

from hubctl.terminal import sender_text

_CODES = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "dim": "2",
    "bold": "1",
}

STATUS_COLOURS = {
    "success": "green",
    "failure": "red",
    "running": "yellow",
    "pending": "cyan",
    "cancelled": "magenta",
    "skipped": "dim",
}
#: Colour codes, which take no room on screen.
_SGR_CODES = re.compile(r"\x1b\[[0-9;:]*m")
LEVEL_COLOURS = {"error": "red", "warning": "yellow", "debug": "dim"}
STATUS_MARKS = {
    "success": "✓",
    "failure": "✗",
    "running": "…",
    "pending": "·",
    "cancelled": "⊘",
    "skipped": "-",
}


def use_colour(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """``always``/``never``, or ``auto``: a terminal and no ``NO_COLOR``."""
    if choice != "auto":
        return choice == "always"
    return not environ.get("NO_COLOR") and stream.isatty()


class Painter:
    """Wraps text in ANSI colour codes, or leaves it alone when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def text(self, value: object) -> str:
        """A sender's value, safe to print: its colours only when colour is on."""
        return sender_text(value, colour=self.enabled)

    def status(self, status: str | None) -> str:
        word = self.text(status or "?")
        return self(word, STATUS_COLOURS.get(word))


def duration(millis: int | None) -> str:
    """``850ms``, ``12.3s``, ``4m 05s``, ``1h 02m``: short and aligned enough."""
    if millis is None:
        return ""
    if millis < 1000:
        return f"{millis}ms"
    seconds = millis / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def clock(timestamp: str | None) -> str:
    """``HH:MM:SS.mmm`` of a normalised timestamp (the date is in the deployment)."""
    if not timestamp or "T" not in timestamp:
        return " " * 12
    return timestamp.split("T", 1)[1].removesuffix("Z")[:12].ljust(12)


def event_lines(event: Mapping[str, Any], paint: Painter) -> list[str]:
    """One event as terminal lines (a log entry gives one line per line of text)."""
    payload: Mapping[str, Any] = event.get("payload") or {}
    kind = str(event.get("type"))
    head = " ".join(
        [
            paint(clock(event.get("timestamp")), "dim"),
            paint(paint.text(event.get("project") or "-"), "bold"),
            paint(f"#{paint.text(event.get('deployment_id') or '-')}", "blue"),
        ]
    )
    where = " / ".join(paint.text(payload[k]) for k in ("job", "step") if payload.get(k))
    if kind == "log_entry":
        level = str(payload.get("level") or "info")
        text = str(payload.get("message") or payload.get("logs") or "")
        prefix = f"{head} {paint(where or 'log', 'dim')} "
        return [
            prefix + paint(paint.text(line), LEVEL_COLOURS.get(level)) for line in text.split("\n")
        ]
    parts = [head, paint(paint.text(kind), "cyan")]
    if where:
        parts.append(where)
    if payload.get("status"):
        parts.append(paint.status(payload["status"]))
    if payload.get("duration_ms") is not None:
        parts.append(duration(payload["duration_ms"]))
    if payload.get("metrics"):
        parts.append(
            " ".join(f"{paint.text(k)}={paint.text(v)}" for k, v in payload["metrics"].items())
        )
    note = payload.get("error") or payload.get("message") or payload.get("logs")
    lines = [" ".join(parts)]
    if note:
        first, *rest = str(note).split("\n")
        lines[0] += " " + paint(paint.text(first), "red" if payload.get("error") else None)
        lines += [" " * 13 + paint.text(line) for line in rest]
    return lines


def deployment_tree(view: Mapping[str, Any], paint: Painter) -> list[str]:
    """A deployment from ``GET /api/deployments/<id>`` as an indented job/step tree."""
    status = view.get("status")
    head = (
        f"{paint(paint.text(view.get('project')), 'bold')} "
        f"{paint('#' + paint.text(view.get('deployment_id')), 'blue')}  "
        f"{paint.status(status)}  {duration(view.get('duration_ms'))}"
    ).rstrip()
    lines = [head]
    facts = [
        f"{label} {paint.text(view[key])}"
        for key, label in (
            ("workflow_name", "workflow"),
            ("branch", "branch"),
            ("commit", "commit"),
            ("actor", "by"),
            ("started_at", "started"),
            ("completed_at", "ended"),
        )
        if view.get(key)
    ]
    if facts:
        lines.append("  " + paint("  ".join(facts), "dim"))
    if view.get("error"):
        lines.append("  " + paint(f"error: {paint.text(view['error'])}", "red"))
    jobs = view.get("jobs") or []
    names = {id(s): paint.text(s.get("name")) for j in jobs for s in j.get("steps") or []}
    width = max((_visible_width(name) for name in names.values()), default=0)
    for job in jobs:
        lines.append(
            f"  {paint(paint.text(job.get('name')), 'bold')}  {paint.status(job.get('status'))}  "
            f"{duration(job.get('duration_ms'))}".rstrip()
        )
        for step in job.get("steps") or []:
            step_status = step.get("status")
            colour = STATUS_COLOURS.get(step_status or "")
            mark = paint(STATUS_MARKS.get(step_status or "", "?"), colour)
            name = names[id(step)]
            name += " " * (width - _visible_width(name))
            lines.append(
                f"    {mark} {name}  {paint(paint.text(step_status or '?').ljust(9), colour)}  "
                f"{duration(step.get('duration_ms'))}".rstrip()
            )
            if step.get("error"):
                lines.append("      " + paint(paint.text(str(step["error"]).split("\n")[0]), "red"))
    if not jobs:
        lines.append("  " + paint("(no steps reported)", "dim"))
    if view.get("log_lines"):
        lines.append("  " + paint(f"{view['log_lines']} log lines", "dim"))
    return lines


def highlighted(text: str, spans: list[list[int]], paint: Painter) -> str:
    """``text`` with the ``[start, end]`` spans (code points) of a search match in bold.

    The spans count code points of the text as the hub sent it, so the text is cut at
    them first and each piece is cleaned on its own (cleaning could move them)."""
    out, at = [], 0
    for start, end in spans:
        out += [paint.text(text[at:start]), paint(paint.text(text[start:end]), "bold")]
        at = end
    return "".join([*out, paint.text(text[at:])])


def search_hit_lines(hit: Mapping[str, Any], paint: Painter, base_url: str) -> list[str]:
    """One search result: where and when, the line with its match, and its dashboard link."""
    where = " / ".join(paint.text(part) for part in (hit.get("job"), hit.get("step")) if part)
    level = paint.text(hit.get("level") or "info")
    head = " ".join(
        part
        for part in (
            paint(paint.text(hit.get("timestamp") or ""), "dim"),
            paint.text(hit.get("project")),
            paint(paint.text(hit.get("deployment_id")), "cyan"),
            where,
            paint(level.upper(), LEVEL_COLOURS.get(level)) if level != "info" else "",
        )
        if part
    )
    text = highlighted(str(hit.get("text") or ""), list(hit.get("match") or []), paint)
    lines = [head, f"  {text}"]
    if hit.get("link"):
        lines.append(paint(f"  {paint.text(base_url)}/{paint.text(hit['link'])}", "dim"))
    return lines


def _visible_width(text: str) -> int:
    """Characters a name takes on screen, not counting its colour codes."""
    return len(_SGR_CODES.sub("", text))
