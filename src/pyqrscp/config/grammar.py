"""The dcmqrscp.cfg syntax: a pyparsing grammar per kind of line, plus the table-block scanner.

DCMTK reads the file line by line; a line is a run of *values* separated by *gaps* (white space,
``=`` and ``,``), where a value is a bare word or text between quotes (``"``, ``'`` or parentheses).
We keep that model, so every file DCMTK 3.6.7 accepts keeps its meaning, and record the column of
every token so that :mod:`pyqrscp.config.model` can point at the offending one.  Meaning (ports,
quotas, symbolic names) is checked in ``model``; this module only knows shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyparsing as pp

from pyqrscp.errors import ConfigError

GAPS = " \t\r\n\f\v=,"
TABLE_KINDS = ("HostTable", "VendorTable", "AETable")
_CLOSER = {'"': '"', "'": "'", "(": ")"}
_FORMATS = {
    "setting": "a setting is: Keyword = value",
    "HostTable": (
        "a HostTable row is: name = (AETitle, HostName, Port), ... or name = othername, ..."
    ),
    "VendorTable": 'a VendorTable row is: "Vendor Name" = symbolicname',
    "AETable": "an AETable row is: AETitle StorageArea R|RW|W (maxStudies, maxBytes) ANY|peers",
    "marker": "a table line is: HostTable|VendorTable|AETable BEGIN|END",
}


@dataclass(frozen=True, slots=True)
class Tok:
    """One value as written: its text (without quotes), 1-based column, and opening quote if any."""

    text: str
    col: int
    quote: str = ""


@dataclass(frozen=True, slots=True)
class TripleSyntax:
    """A peer written as ``(AETitle, HostName, Port)``; ``col`` is the opening quote's column."""

    ae_title: Tok
    host: Tok
    port: Tok
    col: int


PeerSyntax = TripleSyntax | Tok


@dataclass(frozen=True, slots=True)
class QuotaSyntax:
    """``(maxStudies, maxBytesPerStudy)`` as written; numbers are checked by the model."""

    max_studies: Tok
    max_bytes: Tok
    col: int


@dataclass(frozen=True, slots=True)
class SettingLine:
    """``Keyword = value, ...`` outside any table."""

    line: int
    keyword: Tok
    values: tuple[Tok, ...]


@dataclass(frozen=True, slots=True)
class PeerRow:
    """A HostTable or VendorTable row: a name and the peers (triples or symbolic names) it means."""

    line: int
    name: Tok
    peers: tuple[PeerSyntax, ...]


@dataclass(frozen=True, slots=True)
class AERow:
    """An AETable row: ``AETitle StorageArea Access Quota Peers``."""

    line: int
    ae_title: Tok
    storage_area: Tok
    access: Tok
    quota: QuotaSyntax
    peers: tuple[PeerSyntax, ...]


@dataclass(frozen=True, slots=True)
class PeerTable:
    """A ``HostTable``/``VendorTable BEGIN ... END`` block; ``line`` is the BEGIN line."""

    kind: Literal["HostTable", "VendorTable"]
    line: int
    rows: tuple[PeerRow, ...]


@dataclass(frozen=True, slots=True)
class AETableBlock:
    """An ``AETable BEGIN ... END`` block; ``line`` is the BEGIN line."""

    line: int
    rows: tuple[AERow, ...]


Statement = SettingLine | PeerTable | AETableBlock


def _term(regex: str, name: str) -> pp.ParserElement:
    """A terminal that skips DCMTK's gaps before it and yields a located :class:`Tok`."""

    def located(loc: int, toks: pp.ParseResults) -> Tok:
        return Tok(str(toks[0]), loc + 1)

    return (
        pp.Regex(regex)
        .set_whitespace_chars(GAPS, copy_defaults=False)
        .set_name(name)
        .add_parse_action(located)
    )


def _quoted_value(loc: int, toks: pp.ParseResults) -> Tok:
    text = str(toks[0])
    return Tok(text[1:-1], loc + 1, text[0])


def _unbalanced(s: str, loc: int, toks: pp.ParseResults) -> None:
    raise pp.ParseSyntaxException(
        s,
        loc,
        f"unbalanced or nested quote {toks[0].text!r}"
        " (DCMTK ends a quoted value at any of \" ' ( ))",
    )


def _closed(opener: Tok, closer: Tok, s: str) -> None:
    if _CLOSER[opener.text] != closer.text:
        raise pp.ParseSyntaxException(
            s,
            closer.col - 1,
            f"{closer.text!r} does not close {opener.text!r} (expected {_CLOSER[opener.text]!r})",
        )


def _triple(s: str, loc: int, toks: pp.ParseResults) -> TripleSyntax:
    opener, ae_title, host, port, closer = toks
    _closed(opener, closer, s)
    return TripleSyntax(ae_title, host, port, opener.col)


def _quota(s: str, loc: int, toks: pp.ParseResults) -> QuotaSyntax:
    opener, studies, max_bytes, closer = toks
    _closed(opener, closer, s)
    return QuotaSyntax(studies, max_bytes, opener.col)


@dataclass(frozen=True, slots=True)
class Grammar:
    """The compiled line grammars; built per parse so that nothing lives at module level."""

    marker: pp.ParserElement
    setting: pp.ParserElement
    peer_row: pp.ParserElement
    ae_row: pp.ParserElement


def build_grammar() -> Grammar:
    """Build the line grammars (cheap: a few dozen elements, no packrat)."""
    quoted = pp.Regex(r""""[^"'()]*"|'[^"'()]*'|\([^"'()]*\)""").set_whitespace_chars(
        GAPS, copy_defaults=False
    )
    quoted = quoted.set_name("quoted value").add_parse_action(_quoted_value)
    bad_quote = _term(r"""["'()]""", "value").add_parse_action(_unbalanced)
    value = (quoted | _term(r"""[^\s=,"'()#][^\s=,]*""", "value") | bad_quote).set_name("value")
    end = pp.Optional(_term(r"#.*", "comment")) + pp.StringEnd().set_whitespace_chars(
        GAPS, copy_defaults=False
    )
    field = _term(r"""[^\s=,"'()]+""", "field")
    opener = _term(r"""["'(]""", "opening parenthesis")
    closer = _term(r"""["')]""", "closing quote or parenthesis")
    triple_open = _term(r"""["'(](?=[^"'()]*,)""", "peer triple")
    triple = (
        triple_open - field("ae_title").set_name("AE title") - field("host").set_name("host name")
    )
    end_triple = closer.copy().set_name("')' after the port (a triple has exactly three values)")
    triple = (triple - field("port").set_name("port number") - end_triple).set_name("peer triple")
    triple = triple.add_parse_action(_triple)
    peers = pp.Group(pp.OneOrMore((triple | value).set_name("peer"))).set_name(
        "peers (ANY, symbolic names or (AETitle, HostName, Port) triples)"
    )
    quota = (
        opener.copy().set_name("quota (maxStudies, maxBytesPerStudy)")
        - field("max_studies").set_name("max studies")
        - field("max_bytes").set_name("max bytes")
    )
    quota = (
        (quota - closer.copy().set_name("')' after the quota size"))
        .set_name("quota (maxStudies, maxBytesPerStudy)")
        .add_parse_action(_quota)
    )
    kinds = "|".join(TABLE_KINDS)
    return Grammar(
        marker=_term(rf"({kinds})(?=[\s=,#]|$)", "table keyword")("kind")
        - pp.Optional(value)("status").set_name("BEGIN or END")
        - end,
        setting=_term(r"[A-Za-z_][A-Za-z0-9_]*", "keyword")("keyword")
        - pp.Group(pp.ZeroOrMore(value))("values")
        - end,
        peer_row=value("name").set_name("name") - peers("peers") - end,
        ae_row=value("ae_title").set_name("AE title")
        - value("storage_area").set_name("storage area")
        - value("access").set_name("access (R, RW or W)")
        - quota("quota")
        - peers("peers")
        - end,
    )


def _parse(
    expr: pp.ParserElement, text: str, where: tuple[Path, int], what: str
) -> pp.ParseResults:
    """Parse one line; turn pyparsing's exception into ``FILE:LINE:COL: message (expected ...)``."""
    try:
        return expr.parse_with_tabs().parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        if not exc.msg.startswith("Expected"):
            raise ConfigError(*where, exc.loc + 1, exc.msg) from None
        found = re.match(r"[^\s=,]+|.", text[exc.loc :])
        shown = f"'{found.group()}'" if found else "end of line"
        expected = f"expected {exc.msg[len('Expected ') :]}; {_FORMATS[what]}"
        raise ConfigError(
            *where, exc.loc + 1, f"syntax error: found {shown} ({expected})"
        ) from None


def _row(grammar: Grammar, kind: str, text: str, where: tuple[Path, int]) -> PeerRow | AERow:
    if kind == "AETable":
        res = _parse(grammar.ae_row, text, where, kind)
        args = (res["ae_title"], res["storage_area"], res["access"], res["quota"])
        return AERow(where[1], *args, tuple(res["peers"]))
    res = _parse(grammar.peer_row, text, where, kind)
    return PeerRow(where[1], res["name"], tuple(res["peers"]))


@dataclass(slots=True)
class _OpenTable:
    kind: str
    begin: int
    rows: list[PeerRow | AERow]

    def close(self) -> Statement:
        if self.kind == "AETable":
            return AETableBlock(self.begin, tuple(r for r in self.rows if isinstance(r, AERow)))
        kind: Literal["HostTable", "VendorTable"] = (
            "HostTable" if self.kind == "HostTable" else "VendorTable"
        )
        return PeerTable(kind, self.begin, tuple(r for r in self.rows if isinstance(r, PeerRow)))


def _marker(grammar: Grammar, text: str, where: tuple[Path, int]) -> tuple[Tok, Tok] | None:
    """``(kind, status)`` when the line is ``XTable BEGIN|END``; ``None`` for any other line."""
    first = re.match(r"[^\s=,]*", text.lstrip(GAPS))
    if first is None or first.group() not in TABLE_KINDS:
        return None
    res = _parse(grammar.marker, text, where, "marker")
    kind: Tok = res["kind"]
    status: Tok | None = res["status"] if "status" in res else None  # noqa: SIM401 (get is untyped)
    if status is None or status.text not in ("BEGIN", "END"):
        col = status.col if status else len(text.rstrip()) + 1
        shown = f"'{status.text}'" if status else "nothing"
        raise ConfigError(*where, col, f"{kind.text} followed by {shown} (expected BEGIN or END)")
    return kind, status


def scan(text: str, path: Path) -> tuple[Statement, ...]:
    """Split ``text`` into settings and table blocks, raising :class:`ConfigError` on bad syntax."""
    grammar = build_grammar()
    statements: list[Statement] = []
    table: _OpenTable | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r\n")
        stripped = line.strip(" \t\r\f\v")
        if not stripped or stripped.startswith("#"):
            continue
        where = (path, number)
        marker = _marker(grammar, line, where)
        if marker is None and table is None:
            res = _parse(grammar.setting, line, where, "setting")
            statements.append(SettingLine(number, res["keyword"], tuple(res["values"])))
        elif marker is None and table is not None:
            table.rows.append(_row(grammar, table.kind, line, where))
        elif marker is not None:
            table = _table_marker(table, marker, where, statements)
    if table is not None:
        raise ConfigError(
            path,
            table.begin,
            1,
            f"'{table.kind} BEGIN' is never closed (expected '{table.kind} END')",
        )
    return tuple(statements)


def _table_marker(
    table: _OpenTable | None, marker: tuple[Tok, Tok], where: tuple[Path, int], out: list[Statement]
) -> _OpenTable | None:
    """Open or close a table block; a BEGIN inside another block means its END is missing."""
    kind, status = marker
    if table is None and status.text == "BEGIN":
        return _OpenTable(kind.text, where[1], [])
    if table is None:
        raise ConfigError(*where, kind.col, f"'{kind.text} END' without '{kind.text} BEGIN'")
    if kind.text == table.kind and status.text == "END":
        out.append(table.close())
        return None
    raise ConfigError(
        *where,
        kind.col,
        f"'{kind.text} {status.text}' inside the {table.kind} block begun at line {table.begin}"
        f" (expected '{table.kind} END' first)",
    )
