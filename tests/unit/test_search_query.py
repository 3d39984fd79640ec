"""The log search language: parsing, matching, and FTS5 as a faithful narrowing."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.search import (
    MAX_QUERY_LENGTH,
    MAX_TERMS,
    LogSearch,
    QueryError,
    Term,
    decode_search_cursor,
    encode_search_cursor,
    fts_query,
    hit,
    index_text,
    match,
    parse_query,
    scope_text,
    words,
)


def spans(query: str, text: str) -> list[list[int]] | None:
    return match(parse_query(query), text)


def test_words_phrases_and_prefixes_parse() -> None:
    query = parse_query('deploy "connection refused" migr*  失败')
    assert query.terms == (
        Term(("deploy",), False),
        Term(("connection", "refused"), False),
        Term(("migr",), True),
        Term(("失", "败"), False),
    )


def test_punctuation_makes_phrases_and_operators_are_words() -> None:
    assert parse_query("exit-code").terms == (Term(("exit", "code"), False),)
    assert parse_query("exit_code").terms == (Term(("exit", "code"), False),)
    assert parse_query("NOT OR").terms == (Term(("not",), False), Term(("or",), False))
    assert parse_query('"a b"*').terms == (Term(("a", "b"), True),)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('"unclosed phrase', "not closed"),
        ("*", "letters or digits"),
        ("!!!", "letters or digits"),
        ('""', "letters or digits"),
        ("a*b", "only end a word"),
        ("*foo", "only end a word"),
        ('"a*b"', "not stand inside"),
        ('"ab"cd', "space after the phrase"),
        ("a*", "at least 2"),
        (" ".join(["w"] * (MAX_TERMS + 1)), f"at most {MAX_TERMS}"),
        ("x" * (MAX_QUERY_LENGTH + 1), "longer than"),
        ('"' + " ".join(["w"] * 17) + '"', "at most 16"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(query)


def test_a_single_cjk_character_is_a_prefix_long_enough() -> None:
    assert parse_query("部*").terms == (Term(("部",), True),)


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("error", "Error: disk full", [[0, 5]]),
        ("disk full", "Error: disk is full", [[7, 11], [15, 19]]),
        ('"disk full"', "Error: disk is full", None),
        ('"disk full"', "ERROR disk full!", [[6, 15]]),
        ("migr*", "running migrations now", [[8, 18]]),
        ("migr*", "a migr", [[2, 6]]),
        ("migration", "running migrations now", None),
        ("失败", "错误：部署失败，无法连接", [[5, 7]]),
        ("部署失败 连接", "错误：部署失败，无法连接", [[3, 7], [10, 12]]),
        ("exit-code", "exit code 1", [[0, 9]]),
        ("refused", "ECONNREFUSED", None),
        ("econnrefused", "connect ECONNREFUSED 127.0.0.1:5432", [[8, 20]]),
        ("127.0.0.1", "connect ECONNREFUSED 127.0.0.1:5432", [[21, 30]]),
        ("café", "Café au lait", [[0, 4]]),
        ("cafe", "Café au lait", None),
        ("err* err*", "errors: err", [[0, 6], [8, 11]]),
    ],
)
def test_what_matches_and_where(query: str, text: str, expected: list[list[int]] | None) -> None:
    assert spans(query, text) == expected


def test_every_word_must_match() -> None:
    assert spans("disk quota", "disk full") is None


def test_spans_are_in_code_points() -> None:
    text = "😀 Error here"
    found = spans("error", text)
    assert found == [[2, 7]]
    assert text[2:7] == "Error"


def test_the_index_text_of_ascii_is_the_line_and_of_the_rest_its_words() -> None:
    assert index_text("Error: disk full") == "Error: disk full"
    assert index_text("\x1b[31mError\x1b[0m: x") == "error x"
    assert index_text("错误：部署失败") == "错 误 部 署 失 败"
    assert words("Straße_ÄÖ 12") == ["straße", "äö", "12"]


def test_the_fts_query_quotes_every_word() -> None:
    query = parse_query('deploy "a b"* NEAR "OR"')
    assert fts_query(query) == (
        'words : "deploy" AND words : "a b"* AND words : "near" AND words : "or"'
    )


@settings(max_examples=200, deadline=None)
@given(project=st.text(max_size=40), deployment=st.text(min_size=1, max_size=40))
def test_a_line_is_found_under_its_own_project_and_deployment_only(
    project: str, deployment: str
) -> None:
    """Any names are one index word each; the filters narrow to the line's own."""
    scope = scope_text(project, deployment)
    assert len(words(scope)) == 2
    db = _fts()
    db.execute("INSERT INTO t (rowid, words, scope) VALUES (1, 'deploy', ?)", (scope,))
    query = parse_query("deploy")
    for asked, found in (
        ({"project": project}, [(1,)]),
        ({"deployment_id": deployment}, [(1,)]),
        ({"project": project, "deployment_id": deployment}, [(1,)]),
        ({"project": project + "x"}, []),
        ({"deployment_id": deployment + "x"}, []),
    ):
        rows = db.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts_query(query, **asked),))
        assert rows.fetchall() == found, asked


def test_filters() -> None:
    search = LogSearch(
        parse_query("error"),
        job="build",
        level="error",
        since="2024-01-01T00:00:00.000Z",
        until="2024-01-02T00:00:00.000Z",
    )
    row = ("build", "compile", "error", "2024-01-01T10:00:00.000Z", "\x1b[31mError\x1b[0m")
    found = hit(search, 7, "d1", "web", row)
    assert found is not None
    assert (found["id"], found["text"], found["match"]) == ("7", "Error", [[0, 5]])
    assert hit(search, 7, "d1", "web", ("test", *row[1:])) is None  # type: ignore[arg-type]
    assert hit(search, 7, "d1", "web", (*row[:2], "info", *row[3:])) is None  # type: ignore[arg-type]
    late = (*row[:3], "2024-01-03T00:00:00.000Z", row[4])
    assert hit(search, 7, "d1", "web", late) is None  # type: ignore[arg-type]
    assert hit(search, 7, "d1", "web", (*row[:4], "no match")) is None  # type: ignore[arg-type]


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_search_cursor(encode_search_cursor(42)) == 42
    for bad in ("nope", "bGluZTp4", "Zm9vOjE=", "%%%"):
        with pytest.raises(ValueError, match="cursor"):
            decode_search_cursor(bad)


# -- FTS5 narrows, never loses a match ---------------------------------------------------

_ALPHABET = st.sampled_from(
    [*"abcdeABCDE01 _-.:'\"*", "错", "误", "部", "署", "失", "败", "é", "ß", "\x1b[31m", "İ"]
)
lines = st.lists(_ALPHABET, min_size=1, max_size=30).map("".join)


def _fts() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE t USING fts5(words, scope, tokenize='unicode61 remove_diacritics 0')"
    )
    return db


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=lines, data=st.data())
def test_fts5_finds_every_line_that_matches(text: str, data: st.DataObject) -> None:
    """A query made of the line's own words (a phrase, a prefix) is found through the index."""
    found = words(index_text(text)) if "\x1b" not in text else words(text.replace("\x1b", " "))
    assume(found)
    start = data.draw(st.integers(0, len(found) - 1))
    size = data.draw(st.integers(1, min(3, len(found) - start)))
    chosen = found[start : start + size]
    prefix = data.draw(st.booleans()) and len(chosen[-1]) >= 2
    if prefix:
        chosen[-1] = chosen[-1][: data.draw(st.integers(2, len(chosen[-1])))]
    query_text = ('"' + " ".join(chosen) + '"') + ("*" if prefix else "")
    try:
        query = parse_query(query_text)
    except QueryError:
        assume(False)
        raise
    if match(query, text.replace("\x1b[31m", "")) is None:
        return  # the words drawn came from the escape's own letters
    db = _fts()
    db.execute(
        "INSERT INTO t (rowid, words, scope) VALUES (1, ?, ?)",
        (index_text(text), scope_text("web", "d1")),
    )
    rows = db.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts_query(query),)).fetchall()
    assert rows == [(1,)], (text, query_text, index_text(text), fts_query(query))
    scoped = fts_query(query, project="web", deployment_id="d1")
    rows = db.execute("SELECT rowid FROM t WHERE t MATCH ?", (scoped,)).fetchall()
    assert rows == [(1,)], (text, query_text, index_text(text), fts_query(query))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text_is_a_query_that_parses_or_is_refused(text: str) -> None:
    """No input crashes the parser, and what parses makes a valid FTS5 expression."""
    try:
        query = parse_query(text)
    except QueryError:
        return
    db = _fts()
    db.execute("INSERT INTO t (rowid, words) VALUES (1, 'x')")
    db.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts_query(query),)).fetchall()


_GREEK = st.sampled_from([*"ΑΣσςαβ 'Β.", "ΟΔΟΣ", "Error", "ERR", "e"])


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_GREEK | _ALPHABET, min_size=1, max_size=20).map("".join), data=st.data())
def test_the_quick_text_test_never_turns_a_match_away(text: str, data: st.DataObject) -> None:
    """hit() tests each word as text before splitting the line into words; it agrees with
    match() on every line (final sigmas, escapes and all)."""
    found = words(text.replace("\x1b[31m", " "))
    assume(found)
    chosen = data.draw(st.lists(st.sampled_from(found), min_size=1, max_size=3))
    try:
        query = parse_query(" ".join(f'"{word}"' for word in chosen))
    except QueryError:
        assume(False)
        raise
    search = LogSearch(query)
    expected = match(query, text.replace("\x1b[31m", ""))
    result = hit(search, 1, "d", "p", (None, None, "info", "t", text))
    assert (result is None) == (expected is None), (text, chosen)
