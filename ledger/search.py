"""Searching log lines: the query language, what a word is, and what matches.

The query language of ``GET /api/logs/search?q=`` is small on purpose:

* ``word`` matches a line holding that word; every word must match (AND);
* ``"quoted phrase"`` matches those words next to each other, in that order;
* ``prefix*`` matches a word starting with ``prefix`` (two characters at least,
  unless other words of a phrase come before it: ``"exit c"*``);
* case does not matter, and nothing else has a meaning: ``AND``, ``OR``,
  ``NOT``, ``-``, ``(``, ``:`` are words or separators like any other.

A **word** is a run of letters and digits (``_`` and punctuation separate
words, so ``exit-code`` and ``exit_code`` are the phrase ``"exit code"``);
each Chinese character or kana is a word of its own, so that ``失败`` finds
``部署失败`` (it is the phrase ``"失 败"``).  Lines are matched without their
terminal escapes.

:func:`parse_query` refuses a bad query with a message that says what to
change (the API answers 422).  :func:`match` is the one definition of a
match, whatever store answers: SQLite's FTS5 index only narrows the lines
down (:func:`fts_query` builds its query from the parsed words, always
quoted, so no user text is ever FTS5 syntax, and from the project and
deployment filters; :func:`index_text` and :func:`scope_text` are what it
indexes), and every candidate is checked with :func:`match`, which also gives
the ``[start, end]`` spans to highlight (in code points of the line's text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

from ledger.ansi import strip_ansi

#: Longest query accepted, in characters.
MAX_QUERY_LENGTH = 500
#: Most terms (words, phrases, prefixes) in one query.
MAX_TERMS = 12
#: Most words in one phrase.
MAX_PHRASE_WORDS = 16
#: Shortest prefix before ``*`` (one CJK character is enough: it is a word).
MIN_PREFIX = 2

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\U00020000-\U0003134f"
)
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")


class QueryError(ValueError):
    """A query that cannot be searched; the message says what to change."""


class Term(NamedTuple):
    """One thing every matching line must hold: consecutive words, the last maybe a prefix."""

    words: tuple[str, ...]
    prefix: bool


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...]
    text: str

    @property
    def needles(self) -> tuple[str, ...]:
        """Text every matching line holds (lower-cased): each word, and each prefix.

        A cheap ``in`` test on a line before it is split into words; a word
        with a sigma is left out (whether a line's capital sigma lower-cases to the
        medial or the final form depends on the characters around it).
        """
        sigmas = {"σ", "ς"}
        return tuple({word for term in self.terms for word in term.words if not sigmas & set(word)})


def words(text: str) -> list[str]:
    """The words of ``text`` (already without escapes), lower-cased, in order."""
    return [found.group().lower() for found in _WORD.finditer(text)]


def _spans(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def parse_query(text: str) -> Query:
    """The terms of a query; see the module docstring for the language.

    Raises:
        QueryError: the query is empty, too long, has an unclosed quote, a
            ``*`` anywhere but at the end of a word, a too short prefix, or
            a term with no letters or digits.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    terms: list[Term] = []
    at = 0
    while at < len(text):
        char = text[at]
        if char.isspace():
            at += 1
            continue
        if char == '"':
            end = text.find('"', at + 1)
            if end < 0:
                raise QueryError('a quote is not closed: end the phrase with "')
            raw, at = text[at + 1 : end], end + 1
            prefix = at < len(text) and text[at] == "*"
            if prefix:
                at += 1
            if at < len(text) and not text[at].isspace() and text[at] != '"':
                raise QueryError(f'put a space after the phrase "{raw}"')
            if "*" in raw:
                raise QueryError("'*' may only end a word or a phrase, not stand inside one")
            terms.append(_term(raw, prefix, f'"{raw}"'))
            continue
        end = at
        while end < len(text) and not text[end].isspace() and text[end] != '"':
            end += 1
        raw, at = text[at:end], end
        prefix = raw.endswith("*")
        body = raw[:-1] if prefix else raw
        if "*" in body:
            raise QueryError(f"'*' may only end a word: {raw!r}")
        terms.append(_term(body, prefix, raw))
    if not terms:
        raise QueryError("the query is empty: give one or more words to search for")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"at most {MAX_TERMS} words or phrases per query")
    return Query(tuple(terms), text)


def _term(raw: str, prefix: bool, shown: str) -> Term:
    found = tuple(words(raw))
    if not found:
        raise QueryError(f"{shown} has no letters or digits to search for")
    if len(found) > MAX_PHRASE_WORDS:
        raise QueryError(f"at most {MAX_PHRASE_WORDS} words in one phrase")
    last = found[-1]
    if prefix and len(found) == 1 and len(last) < MIN_PREFIX and not _CJK_CHAR.fullmatch(last):
        raise QueryError(f"a prefix needs at least {MIN_PREFIX} characters before '*'")
    return Term(found, prefix)


def match(query: Query, text: str) -> list[list[int]] | None:
    """Where each term of ``query`` occurs in ``text`` (no escapes), or ``None`` if any
    term does not: sorted, merged ``[start, end]`` spans in code points."""
    tokens = _spans(text)
    spans: list[tuple[int, int]] = []
    for term in query.terms:
        found = _occurrences(term, tokens)
        if not found:
            return None
        spans.extend(found)
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _occurrences(term: Term, tokens: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    size = len(term.words)
    found = []
    for i in range(len(tokens) - size + 1):
        for k, word in enumerate(term.words):
            token = tokens[i + k][0]
            last = k == size - 1
            if not (token == word or (last and term.prefix and token.startswith(word))):
                break
        else:
            found.append((tokens[i][1], tokens[i + size - 1][2]))
    return found


def plain(text: str) -> str:
    """A stored line as it is searched and shown in results: without escapes."""
    return strip_ansi(text)


def index_text(message: str) -> str:
    """What the full-text index holds for a line: its words, lower-cased, space-separated.

    Plain ASCII lines are indexed as they are (FTS5's ``unicode61`` tokenizer
    splits and folds ASCII exactly as :func:`words` does), which spares most
    lines the work.
    """
    if message.isascii() and "\x1b" not in message:
        return message
    return " ".join(words(plain(message)))


def scope_text(project: str | None, deployment_id: str) -> str:
    """What the index's ``scope`` column holds for a line: a word for the project its
    deployment has and one for the deployment, so that a search's filters narrow inside
    the index rather than after it.

    Each is a hash, so that any name is one word of letters and digits; two
    names that share a hash only let more lines through to the filters, which
    still decide.
    """
    return f"{_scope_word('p', project or '')} {_scope_word('d', deployment_id)}"


def _scope_word(kind: str, name: str) -> str:
    return kind + hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


def fts_query(query: Query, *, project: str | None = None, deployment_id: str | None = None) -> str:
    """The FTS5 MATCH expression for ``query`` (in the ``words`` column) and the filters
    (in ``scope``, see :func:`scope_text`): every term a quoted string, ANDed.

    Only words (letters and digits) ever reach FTS5, each inside double
    quotes, so no user text is read as FTS5 syntax.
    """
    parts = []
    if project is not None:
        parts.append(f'scope : "{_scope_word("p", project)}"')
    if deployment_id is not None:
        parts.append(f'scope : "{_scope_word("d", deployment_id)}"')
    for term in query.terms:
        quoted = '"' + " ".join(word.replace('"', '""') for word in term.words) + '"'
        parts.append("words : " + quoted + ("*" if term.prefix else ""))
    return " AND ".join(parts)


# -- what a search asks and answers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogSearch:
    """A search: the query and the filters every result must pass (``None``: any)."""

    query: Query
    project: str | None = None
    deployment_id: str | None = None
    job: str | None = None
    step: str | None = None
    level: str | None = None
    since: str | None = None  # timestamps as the hub spells them, inclusive
    until: str | None = None
    needles: tuple[str, ...] = ()  # the query's (set after the fields above)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", self.query.needles)

    def keeps(self, job: str | None, step: str | None, level: str, timestamp: str) -> bool:
        """Whether a line passes the filters other than project and deployment."""
        return (
            (self.job is None or job == self.job)
            and (self.step is None or step == self.step)
            and (self.level is None or level == self.level)
            and (self.since is None or timestamp >= self.since)
            and (self.until is None or timestamp <= self.until)
        )


class SearchHit(TypedDict):
    """One result of ``GET /api/logs/search``."""

    id: str
    deployment_id: str
    project: str
    job: str | None
    step: str | None
    level: str
    timestamp: str
    text: str
    match: list[list[int]]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Results newest first; ``truncated``: the store stopped at its bound (more may match
    beyond ``next_cursor``)."""

    items: list[SearchHit]
    next_cursor: str | None
    truncated: bool = False


def hit(
    search: LogSearch,
    line_id: int,
    deployment_id: str,
    project: str,
    row: tuple[str | None, str | None, str, str, str],
) -> SearchHit | None:
    """The result for a stored line ``(job, step, level, timestamp, message)``, or ``None``
    when it does not match (the one test every store applies)."""
    job, step, level, timestamp, message = row
    if not search.keeps(job, step, level, timestamp):
        return None
    text = plain(message)
    lowered = text.lower()
    if any(needle not in lowered for needle in search.needles):
        return None
    spans = match(search.query, text)
    if spans is None:
        return None
    return {
        "id": str(line_id),
        "deployment_id": deployment_id,
        "project": project,
        "job": job,
        "step": step,
        "level": level,
        "timestamp": timestamp,
        "text": text,
        "match": spans,
    }


def encode_search_cursor(line_id: int) -> str:
    """The cursor that continues with lines older than ``line_id``."""
    return base64.urlsafe_b64encode(f"line:{line_id}".encode()).decode()


def decode_search_cursor(cursor: str) -> int:
    """Raise ``ValueError`` for a cursor the API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from this API") from None
    kind, _, number = raw.partition(":")
    if kind != "line" or not (number.isascii() and number.isdigit()) or len(number) > 19:
        raise ValueError("not a cursor from this API")
    return int(number)
