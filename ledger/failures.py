"""The line that explains a failure, and what a failed deployment's record holds.

When a deployment fails, people want the one line that says why, not the
last line of the log: every failure ends with ``Process completed with exit
code 1``, which explains nothing.  :func:`pick_line` reads a step's log the
way a person does:

* terminal escapes are stripped, and CI markers (``##[error]``) ignored;
* a line *says what failed* when it has one of the common shapes:
  ``Error:``/``error:``/``TypeError:``, ``ERROR``, ``FATAL``, ``fatal:``,
  ``panic:``, an ``Exception``, Go's ``--- FAIL:``, the shell's
  ``command not found``, Chinese ``错误``/``失败``/``异常``, and the
  exception line at the end of a Python ``Traceback``;
* lines at level ``error`` (a sender's error message among them), and
  ``FAILED``/``FAILURE``/``failed`` and ``npm ERR!`` lines, *hint*: they
  usually follow or sum up the line that says what failed, and count when none
  does;
* ``exit code N`` and build tools' boilerplate (``npm ERR! code 1``,
  Maven's ``-> [Help 1]``) explain nothing: exit codes count only when
  nothing else is found, boilerplate never;
* of the best kind found, the **last block** wins (the last error block before
  the step ended), and in it the first line of that kind, or, when the block
  holds a traceback, the exception line at its end.

:func:`explain` applies it to a failed deployment: the step that failed first
(by when it ended), its log lines, its error message, then the deployment's
own lines and message; :func:`failure_action` says when a write must explain
a deployment again.  The store keeps one :class:`FailureRecord` per failed
deployment, written in the same write as its completion, and groups records
by :mod:`signature <ledger.signatures>` on read (:func:`failure_page`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, NamedTuple, TypedDict

import orjson

from ledger.ansi import strip_ansi
from ledger.events import DEFAULT_JOB
from ledger.fold import Fold, Step
from ledger.logs import LogRow
from ledger.recorder import Touched
from ledger.signatures import normalise, signature_of_pattern

#: Lines of a deployment's log read to explain it: the newest this many.
MAX_EXPLAIN_LINES = 20000
#: Deployments listed per signature (the newest).
RECENT_DEPLOYMENTS = 5
#: Longest line text a record keeps.
MAX_LINE_TEXT = 2000


class Kind(IntEnum):
    """How much a line says about a failure (higher explains more)."""

    NONE = 0
    GENERIC = 1  # exit codes: every failure ends with one
    HINT = 2  # FAILED, npm ERR!: usually after the line that says why
    STRONG = 3  # says what failed


_CI_PREFIX = re.compile(r"^\s*(?:##\[(\w+)\]|::(\w+)(?:\s[^:]*)?::)")
_LEADING_TIME = re.compile(
    r"^\s*\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?\s*"
)
_GENERIC = re.compile(
    r"process completed with exit code -?\d+"
    r"|\bexit(?:ed)?(?: with)? (?:code|status)[:\s]*-?\d+"
    r"|^exit(?:ed)?(?: with)? -?\d+\W*$"
    r"|\breturned (?:a )?non-zero exit (?:code|status)"
    r"|^(?:error )?command failed with exit code \d+"
    r"|^make(?:\[\d+\])?: \*\*\* .*\berror \d+"
    r"|^error: (?:could not compile|aborting due to)\b"
    r"|^error: recipe for target"
    r"|^##\[error\]\s*$",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"^npm (?:ERR!|error)\s*(?:$|code\b|errno\b|syscall\b|path\b|command\b|signal\b|cwd\b"
    r"|A complete log|This is probably|Exit status|Failed at the|Log files were|/|\w:\\)"
    r"|^\[ERROR\]\s*(?:$|-> \[Help|\[Help \d|Re-run Maven|To see the full stack|"
    r"For more information about|Failed to execute goal .* -> \[Help)"
    r"|^\*\s*(?:Try|Get more help|What went wrong)"
    r"|^>\s*(?:Run with --|Get more help)"
    r"|^error Command failed\b"
    r"|^info Visit https://yarnpkg"
)
_STRONG = re.compile(
    r"[Ee]rror(?:\[[\w-]+\])?:"  # Error:, error:, TypeError:, error[E0425]:
    r"|\bERROR\b|\bFATAL\b|\b[Ff]atal(?: error)?:|\bpanic:|Exception\b"
    r"|^--- FAIL:"
    r"|: command not found|: No such file or directory|: Permission denied"
    r"|\bSegmentation fault\b|\bOOMKilled\b|\bout of memory\b|\bKilled\b"
    r"|\bconnection refused\b|\btimed out\b"
    r"|错误|失败|异常|致命"
)
_HINT = re.compile(
    r"\bFAIL(?:ED|URE)?\b|^npm (?:ERR!|error)\b|\bERR!|(?i:\bfailed\b|\bcannot\b|\bunable to\b)",
)
_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):")
_BLANK = re.compile(r"^\s*$")


class Line(NamedTuple):
    """A log line as :func:`pick_line` reads it: its id, level, time and stored text, and
    the job and step it was logged under (its link names them)."""

    id: str
    level: str
    timestamp: str
    text: str
    job: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class Pick:
    """The line chosen (``None`` when only a message explained it) and how much it says."""

    line: Line | None
    text: str
    kind: Kind


def clean(text: str) -> str:
    """A line as it reads: no escapes, no CI marker, no leading time stamp."""
    plain = strip_ansi(text)
    plain = _CI_PREFIX.sub("", plain, count=1)
    return _LEADING_TIME.sub("", plain, count=1).rstrip()


def kind_of(text: str, level: str = "info") -> Kind:
    """How much one line (already :func:`clean`) says about a failure, taken alone."""
    stripped = text.strip()
    if not stripped or _GENERIC.search(stripped):
        return Kind.GENERIC if stripped else Kind.NONE
    if _BOILERPLATE.search(stripped):
        return Kind.NONE
    if _STRONG.search(stripped):
        return Kind.STRONG
    if level == "error" or _HINT.search(stripped):
        return Kind.HINT
    return Kind.NONE


def _marked_error(text: str) -> bool:
    """A CI error marker (``##[error]``, ``::error::``) makes a line an error line."""
    found = _CI_PREFIX.match(strip_ansi(text))
    return found is not None and (found.group(1) or found.group(2) or "").lower() == "error"


def pick_line(lines: Sequence[Line]) -> Pick | None:
    """The line of ``lines`` (in log order) that best explains a failure; see the module."""
    if not lines:
        return None
    texts = [clean(line.text) for line in lines]
    kinds: list[Kind] = []
    member = [False] * len(lines)  # belongs to an error block without being a candidate
    exception = [False] * len(lines)  # the exception line that ends a traceback
    in_traceback = False
    for index, (line, text) in enumerate(zip(lines, texts, strict=True)):
        level = "error" if _marked_error(line.text) else line.level
        if _TRACEBACK.match(text):
            in_traceback = True
            kinds.append(Kind.NONE)
            member[index] = True
            continue
        if in_traceback:
            if _BLANK.match(text) or text[:1].isspace():
                kinds.append(Kind.NONE)  # a frame, its source line, a caret
                member[index] = True
                continue
            in_traceback = False
            exception[index] = True
            kind = kind_of(text, level)
            kinds.append(Kind.STRONG if kind != Kind.GENERIC else kind)
            continue
        kinds.append(kind_of(text, level))
        member[index] = bool(_BLANK.match(text) or text[:1].isspace()) or (
            _BOILERPLATE.search(text.strip()) is not None
        )
    best = max(kinds)
    if best == Kind.NONE:
        return None
    last = max(i for i, kind in enumerate(kinds) if kind == best)
    start = last
    while start > 0 and (kinds[start - 1] != Kind.NONE or member[start - 1]):
        start -= 1
    block = range(start, last + 1)
    ends = [i for i in block if exception[i] and kinds[i] == best]
    chosen = ends[-1] if ends else next(i for i in block if kinds[i] == best)
    return Pick(lines[chosen], texts[chosen].strip(), best)


def pick_message(message: str | None) -> Pick | None:
    """An error message as the explanation: its most telling line (messages span lines)."""
    if not message or not message.strip():
        return None
    lines = [Line("", "error", "", text) for text in message.splitlines()]
    found = pick_line(lines)
    if found is None:  # pragma: no cover - a non-blank error line is at least GENERIC
        return None
    return Pick(None, found.text, found.kind)


def best_of(*candidates: Pick | None) -> Pick | None:
    """The first candidate that says what failed; else the first that says anything."""
    known = [c for c in candidates if c is not None]
    for pick in known:
        if pick.kind >= Kind.HINT:
            return pick
    return known[0] if known else None


def pick_for_step(lines: Sequence[Line], ended_at: str | None) -> Pick | None:
    """:func:`pick_line` on the lines logged before the step ended, else on all of them."""
    if ended_at:
        before = [line for line in lines if not line.timestamp or line.timestamp <= ended_at]
        if len(before) < len(lines):
            return best_of(pick_line(before), pick_line(lines))
    return pick_line(lines)


# -- a failed deployment -----------------------------------------------------------------


class LineRef(TypedDict):
    """The line that explains a failure: its id and text (no escapes), and the job and step
    it was logged under (a deployment's own lines have none)."""

    id: str
    text: str
    job: str | None
    step: str | None


class StepFailure(TypedDict):
    """One failed step of a failed deployment, with the line that explains it."""

    job: str
    step: str
    line: LineRef | None
    message: str | None
    signature: str


class FailureRecord(TypedDict):
    """What a store keeps of one failed deployment (``failed_at`` orders and windows it)."""

    deployment_id: str
    project: str
    job: str | None
    step: str | None
    line: LineRef | None
    message: str | None
    signature: str
    pattern: str
    failed_at: str
    steps: list[StepFailure]


class Seen(TypedDict):
    """Earlier failures with the same signature: how many, when, and the newest of them."""

    count: int
    first_seen: str | None
    last_seen: str | None
    deployments: list[str]


class FailureView(TypedDict):
    """``failure`` of ``GET /api/deployments/<id>``."""

    job: str | None
    step: str | None
    line: LineRef | None
    message: str | None
    signature: str
    pattern: str
    failed_at: str
    seen: Seen
    steps: list[StepFailure]


def failed_steps(fold: Fold) -> list[Step]:
    """The deployment's failed steps, the one that ended first first (then in log order)."""
    failed = [step for step in fold.steps.values() if step.status == "failure"]
    return sorted(
        failed,
        key=lambda s: (
            s.completed_at or "~",
            s.step_number if s.step_number is not None else 1 << 30,
            s.first_seen,
            s.job,
            s.name,
        ),
    )


def _ref(pick: Pick | None) -> LineRef | None:
    if pick is None or pick.line is None:
        return None
    line = pick.line
    return {"id": line.id, "text": pick.text[:MAX_LINE_TEXT], "job": line.job, "step": line.step}


def _linked(lines: Sequence[Line], pick: Pick | None) -> Pick | None:
    """A pick from a message, linked to the log line that holds the same text, if any."""
    if pick is None or pick.line is not None:
        return pick
    for line in reversed(lines):
        if clean(line.text).strip() == pick.text:
            return Pick(line, pick.text, pick.kind)
    return pick


def _stronger(from_lines: Pick | None, from_message: Pick | None) -> Pick | None:
    """The log's pick unless the message says more (ties go to the log)."""
    if from_lines is None:
        return from_message
    if from_message is not None and from_message.kind > from_lines.kind:
        return from_message
    return from_lines


def _explained(pick: Pick | None, fallback: str) -> tuple[LineRef | None, str]:
    """The line to link and the text the signature is made of."""
    return _ref(pick), pick.text if pick is not None else fallback


def explain(
    deployment_id: str, fold: Fold, rows: Sequence[LogRow], failed_at: str | None
) -> FailureRecord:
    """The record of a failed deployment: its first failed step and the line that explains it.

    ``rows`` are the deployment's log lines in log order (the newest
    :data:`MAX_EXPLAIN_LINES` of them); ``failed_at`` is when it failed.  Each
    failed step is explained from its own lines and error message first, then
    from the deployment's own lines (no step) and error message; a deployment
    with no failed step from its own lines and message, then from all lines.
    """
    by_step: dict[tuple[str | None, str | None], list[Line]] = {}
    every: list[Line] = []
    for row in rows:
        read = Line(
            row["id"], row["level"], row["timestamp"], row["message"], row["job"], row["step"]
        )
        every.append(read)
        by_step.setdefault((row["job"] or None, row["step"] or None), []).append(read)
    loose = by_step.get((None, None), [])
    deployment_pick = _stronger(pick_line(loose), _linked(loose, pick_message(fold.error)))
    steps: list[StepFailure] = []
    first: tuple[LineRef | None, str, str | None] | None = None
    for step in failed_steps(fold):
        own = by_step.get((step.job, step.name), [])
        if not own and step.job == DEFAULT_JOB:
            own = by_step.get((None, step.name), [])
        pick = best_of(
            _stronger(
                pick_for_step(own, step.completed_at), _linked(own, pick_message(step.error))
            ),
            deployment_pick,
        )
        line, text = _explained(pick, f"{step.job} / {step.name} failed")
        steps.append(
            {
                "job": step.job,
                "step": step.name,
                "line": line,
                "message": step.error,
                "signature": signature_of_pattern(normalise(text)),
            }
        )
        if first is None:
            first = (line, text, step.error or fold.error)
    job: str | None = None
    step_name: str | None = None
    message: str | None
    if first is not None:
        job, step_name = steps[0]["job"], steps[0]["step"]
        line, text, message = first
    else:
        line, text = _explained(
            best_of(deployment_pick, pick_line(every)), "deployment failed without a message"
        )
        message = fold.error
    pattern = normalise(text)
    return {
        "deployment_id": deployment_id,
        "project": fold.project,
        "job": job,
        "step": step_name,
        "line": line,
        "message": message,
        "signature": signature_of_pattern(pattern),
        "pattern": pattern,
        "failed_at": failed_at or failed_at_of(fold),
        "steps": steps,
    }


Action = Literal["explain", "clear"] | None


def failure_action(status: str, *, was_failed: bool, refolded: bool, logged: bool) -> Action:
    """What a write does about a deployment's failure record.

    ``explain`` when it is failed and the write changed its lifecycle or added
    lines to it (a later line may explain it better); ``clear`` when it was
    failed before the write and no longer is (a re-run that passed).
    """
    if status == "failure":
        return "explain" if refolded or logged else None
    return "clear" if was_failed else None


def action_for(touched: Touched) -> Action:
    """:func:`failure_action` for a deployment as a write leaves it.

    Whether it was failed before matters only when its lifecycle changed (else
    its status did not), so the stored fold's status is read only then.
    """
    status = touched.status
    refolded = touched.refolded or touched.created
    return failure_action(
        status,
        was_failed=refolded and status != "failure" and touched.was_failed,
        refolded=refolded,
        logged=touched.logged,
    )


def failed_at_of(fold: Fold) -> str:
    """When a failed deployment failed: its completion, else its first failed step's end,
    else its newest event."""
    completed_at = fold.headline()[1]
    if completed_at:
        return completed_at
    steps = [s.completed_at for s in failed_steps(fold) if s.completed_at]
    return steps[0] if steps else fold.last_ts or fold.created_ts or ""


# -- seen before, and failures grouped by signature -------------------------------------


class FailureRow(NamedTuple):
    """What grouping and ``seen`` need of a record (stores keep these apart from the record)."""

    deployment_id: str
    project: str
    job: str | None
    step: str | None
    signature: str
    pattern: str
    sample: str
    failed_at: str


def row_of(record: FailureRecord) -> FailureRow:
    line = record["line"]
    return FailureRow(
        record["deployment_id"],
        record["project"],
        record["job"],
        record["step"],
        record["signature"],
        record["pattern"],
        line["text"] if line else record["message"] or "",
        record["failed_at"],
    )


def seen_of(count: int, first_seen: str | None, recent: Sequence[tuple[str, str]]) -> Seen:
    """``seen`` from the earlier failures with the signature: how many, the oldest one's
    time, and the newest ``(failed_at, deployment)`` first (at most
    :data:`RECENT_DEPLOYMENTS`)."""
    recent = list(recent)[:RECENT_DEPLOYMENTS]
    return {
        "count": count,
        "first_seen": first_seen if count else None,
        "last_seen": recent[0][0] if recent else None,
        "deployments": [deployment for _, deployment in recent],
    }


def failure_view(record: FailureRecord, seen: Seen) -> FailureView:
    return {
        "job": record["job"],
        "step": record["step"],
        "line": record["line"],
        "message": record["message"],
        "signature": record["signature"],
        "pattern": record["pattern"],
        "failed_at": record["failed_at"],
        "seen": seen,
        "steps": record["steps"],
    }


class StepCount(TypedDict):
    job: str | None
    step: str | None
    count: int


class FailureGroup(TypedDict):
    """One item of ``GET /api/failures``."""

    signature: str
    pattern: str
    sample: str
    count: int
    first_seen: str
    last_seen: str
    projects: list[str]
    steps: list[StepCount]
    deployments: list[str]


class FailureTally(NamedTuple):
    """Failures of one signature in one project at one step: how many, the oldest and the
    newest time.  All a page of groups needs of every failure (SQLite counts these in SQL,
    the one pass over the window; :func:`tally_failures` is the same in Python)."""

    signature: str
    project: str
    job: str | None
    step: str | None
    failures: int
    first_seen: str
    last_seen: str


def tally_failures(rows: Iterable[FailureRow]) -> list[FailureTally]:
    """``rows`` counted per signature, project, job and step (``GROUP BY`` all four)."""
    tallies: dict[tuple[str, str, str | None, str | None], tuple[int, str, str]] = {}
    for row in rows:
        key = (row.signature, row.project, row.job, row.step)
        known = tallies.get(key)
        if known is None:
            tallies[key] = (1, row.failed_at, row.failed_at)
        else:
            count, first, last = known
            tallies[key] = (count + 1, min(first, row.failed_at), max(last, row.failed_at))
    return [FailureTally(*key, *value) for key, value in tallies.items()]


@dataclass(frozen=True, slots=True)
class _Head:
    """A group without its newest failures: what orders and pages the groups."""

    signature: str
    count: int
    first_seen: str
    last_seen: str
    projects: list[str]
    steps: list[StepCount]


def _heads(tallies: Iterable[FailureTally]) -> list[_Head]:
    """One head per signature, in the order of the answer (see :func:`_order`)."""
    by_signature: dict[str, list[FailureTally]] = {}
    for tally in tallies:
        by_signature.setdefault(tally.signature, []).append(tally)
    heads = []
    for signature, parts in by_signature.items():
        steps: Counter[tuple[str | None, str | None]] = Counter()
        for part in parts:
            steps[(part.job, part.step)] += part.failures
        heads.append(
            _Head(
                signature,
                sum(part.failures for part in parts),
                min(part.first_seen for part in parts),
                max(part.last_seen for part in parts),
                sorted({part.project for part in parts}),
                [
                    {"job": job, "step": step, "count": count}
                    for (job, step), count in sorted(
                        steps.items(), key=lambda item: (-item[1], str(item[0]))
                    )
                ],
            )
        )
    heads.sort(key=lambda head: _order(head.count, head.last_seen, head.signature))
    return heads


def _order(count: int, last_seen: str, signature: str) -> tuple[int, str, str]:
    """Most frequent first, then the most recent, then by signature (a total order)."""
    return (-count, _negated(last_seen), signature)


def _negated(text: str) -> str:
    """A string that sorts in the opposite order of ``text`` (for timestamps)."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text) + "\U0010ffff"


def recency(row: FailureRow) -> tuple[str, str]:
    """What orders a signature's failures: by time, then deployment id (newest = greatest)."""
    return (row.failed_at, row.deployment_id)


#: A signature's newest failures of the window, newest first (by :func:`recency`), at
#: least :data:`RECENT_DEPLOYMENTS` of them where there are that many.
Newest = Callable[[str], Sequence[FailureRow]]


def failure_page(
    tallies: Iterable[FailureTally], newest: Newest, *, limit: int, cursor: str | None
) -> tuple[list[FailureGroup], str | None]:
    """One page of failures grouped by signature, most frequent first, after ``cursor``.

    The one definition of a group: its count, first and last time, projects and
    steps come from the tallies of every failure of the window; its pattern and
    sample from its newest failure, its deployments the newest few.  So a store
    reads every failure's tally but the rows of the page's signatures only.

    Raises:
        ValueError: ``cursor`` is not one this function handed out.
    """
    heads = _heads(tallies)
    start = 0
    if cursor is not None:
        after = decode_group_cursor(cursor)
        start = next(
            (i for i, h in enumerate(heads) if _order(h.count, h.last_seen, h.signature) > after),
            len(heads),
        )
    page = [_group(head, newest(head.signature)) for head in heads[start : start + limit]]
    more = start + limit < len(heads)
    return page, encode_group_cursor(page[-1]) if more and page else None


def _group(head: _Head, newest: Sequence[FailureRow]) -> FailureGroup:
    return {
        "signature": head.signature,
        "pattern": newest[0].pattern,
        "sample": newest[0].sample,
        "count": head.count,
        "first_seen": head.first_seen,
        "last_seen": head.last_seen,
        "projects": head.projects,
        "steps": head.steps,
        "deployments": [row.deployment_id for row in newest[:RECENT_DEPLOYMENTS]],
    }


def group_failures(
    rows: Iterable[FailureRow], *, limit: int, cursor: str | None
) -> tuple[list[FailureGroup], str | None]:
    """:func:`failure_page` of failure rows a store read whole.

    Raises:
        ValueError: ``cursor`` is not one this function handed out.
    """
    rows = list(rows)
    by_signature: dict[str, list[FailureRow]] = {}
    for row in rows:
        by_signature.setdefault(row.signature, []).append(row)

    def newest(signature: str) -> list[FailureRow]:
        return sorted(by_signature[signature], key=recency, reverse=True)[:RECENT_DEPLOYMENTS]

    return failure_page(tally_failures(rows), newest, limit=limit, cursor=cursor)


def encode_group_cursor(group: FailureGroup) -> str:
    raw = orjson.dumps([group["count"], group["last_seen"], group["signature"]])
    return base64.urlsafe_b64encode(raw).decode()


def decode_group_cursor(cursor: str) -> tuple[int, str, str]:
    try:
        count, last_seen, signature = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise ValueError("not a cursor from this API") from None
    if not (isinstance(count, int) and isinstance(last_seen, str) and isinstance(signature, str)):
        raise ValueError("not a cursor from this API")
    return _order(count, last_seen, signature)
