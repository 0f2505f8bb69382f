"""The dcmqrscp.cfg line grammar: DCMTK's lexical rules, located tokens and syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyqrscp.config.grammar import (
    AERow,
    AETableBlock,
    PeerRow,
    PeerTable,
    QuotaSyntax,
    SettingLine,
    Tok,
    TripleSyntax,
    scan,
)
from pyqrscp.errors import ConfigError

CFG = Path("dcmqrscp.cfg")


def host_rows(*rows: str) -> str:
    return "HostTable BEGIN\n" + "\n".join(rows) + "\nHostTable END\n"


def ae_rows(*rows: str) -> str:
    return "AETable BEGIN\n" + "\n".join(rows) + "\nAETable END\n"


def only_row(text: str) -> PeerRow | AERow:
    (block,) = scan(text, CFG)
    assert isinstance(block, PeerTable | AETableBlock)
    (row,) = block.rows
    return row


@pytest.mark.parametrize(
    ("line", "keyword", "values"),
    [
        ("NetworkTCPPort  = 104", Tok("NetworkTCPPort", 1), (Tok("104", 19),)),
        ("NetworkTCPPort=104", Tok("NetworkTCPPort", 1), (Tok("104", 16),)),
        ("NetworkTCPPort 104", Tok("NetworkTCPPort", 1), (Tok("104", 16),)),
        ("  MaxPDUSize = 16384  # comment", Tok("MaxPDUSize", 3), (Tok("16384", 16),)),
        ("UserName = dcmtk\r", Tok("UserName", 1), (Tok("dcmtk", 12),)),
        (
            'SpecificCharacterSet = "ISO_IR 192", override, discard, transliterate',
            Tok("SpecificCharacterSet", 1),
            (
                Tok("ISO_IR 192", 24, '"'),
                Tok("override", 38),
                Tok("discard", 48),
                Tok("transliterate", 57),
            ),
        ),
        ("GroupName = 'my group'", Tok("GroupName", 1), (Tok("my group", 13, "'"),)),
        ("MaxAssociations =", Tok("MaxAssociations", 1), ()),
    ],
)
def test_setting_lines(line: str, keyword: Tok, values: tuple[Tok, ...]) -> None:
    assert scan(line, CFG) == (SettingLine(1, keyword, values),)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "acme1 = (ACME1, acmehost1, 5678)",
            PeerRow(
                2,
                Tok("acme1", 1),
                (TripleSyntax(Tok("ACME1", 10), Tok("acmehost1", 17), Tok("5678", 28), 9),),
            ),
        ),
        (
            "g = acme1, acme2",
            PeerRow(2, Tok("g", 1), (Tok("acme1", 5), Tok("acme2", 12))),
        ),
        (  # DCMTK: '=' is only a gap, so it may be left out; triples and names mix
            "g (A,h,1) acme2",
            PeerRow(
                2,
                Tok("g", 1),
                (TripleSyntax(Tok("A", 4), Tok("h", 6), Tok("1", 8), 3), Tok("acme2", 11)),
            ),
        ),
        (  # gaps inside a triple: any run of blanks, '=' and ',' (one comma makes it a triple)
            "  g = ( A h, 104 ) # indented row, spaces in the triple, trailing comment",
            PeerRow(2, Tok("g", 3), (TripleSyntax(Tok("A", 9), Tok("h", 11), Tok("104", 14), 7),)),
        ),
        (  # any quote style may hold a triple, as in DCMTK
            "g = \"A, h, 1\", 'B, k, 2'",
            PeerRow(
                2,
                Tok("g", 1),
                (
                    TripleSyntax(Tok("A", 6), Tok("h", 9), Tok("1", 12), 5),
                    TripleSyntax(Tok("B", 17), Tok("k", 20), Tok("2", 23), 16),
                ),
            ),
        ),
        (  # without a comma a quoted value is a symbolic name, as in DCMTK
            "g = (acme1)",
            PeerRow(2, Tok("g", 1), (Tok("acme1", 5, "("),)),
        ),
        (
            '"Acme CT Company" = acmeCTcompany',
            PeerRow(2, Tok("Acme CT Company", 1, '"'), (Tok("acmeCTcompany", 21),)),
        ),
        (
            "g = (A,h,1)(B,k,2)",
            PeerRow(
                2,
                Tok("g", 1),
                (
                    TripleSyntax(Tok("A", 6), Tok("h", 8), Tok("1", 10), 5),
                    TripleSyntax(Tok("B", 13), Tok("k", 15), Tok("2", 17), 12),
                ),
            ),
        ),
    ],
)
def test_host_rows(row: str, expected: PeerRow) -> None:
    assert only_row(host_rows(row)) == expected


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "ACME_STORE /var/lib/dcmtk/db/ACME_STORE RW (9, 1024mb) acmeCTcompany",
            AERow(
                2,
                Tok("ACME_STORE", 1),
                Tok("/var/lib/dcmtk/db/ACME_STORE", 12),
                Tok("RW", 41),
                QuotaSyntax(Tok("9", 45), Tok("1024mb", 48), 44),
                (Tok("acmeCTcompany", 56),),
            ),
        ),
        (
            r"ACME_STORE C:\temp\PACS RW (9, 1024mb) ANY",
            AERow(
                2,
                Tok("ACME_STORE", 1),
                Tok(r"C:\temp\PACS", 12),
                Tok("RW", 25),
                QuotaSyntax(Tok("9", 29), Tok("1024mb", 32), 28),
                (Tok("ANY", 40),),
            ),
        ),
        (
            r'"MY AE" "C:\My Files\PACS" R ( 10 , 2GB ) (A, h, 104), g',
            AERow(
                2,
                Tok("MY AE", 1, '"'),
                Tok(r"C:\My Files\PACS", 9, '"'),
                Tok("R", 28),
                QuotaSyntax(Tok("10", 32), Tok("2GB", 37), 30),
                (TripleSyntax(Tok("A", 44), Tok("h", 47), Tok("104", 50), 43), Tok("g", 56)),
            ),
        ),
        (
            "\tA\t/x\tW\t(1,1kb)\tANY\r",
            AERow(
                2,
                Tok("A", 2),
                Tok("/x", 4),
                Tok("W", 7),
                QuotaSyntax(Tok("1", 10), Tok("1kb", 12), 9),
                (Tok("ANY", 17),),
            ),
        ),
    ],
)
def test_ae_rows(row: str, expected: AERow) -> None:
    assert only_row(ae_rows(row)) == expected


def test_blank_comment_and_crlf_lines_are_skipped_everywhere() -> None:
    text = (
        "# top\r\n   # indented\r\n\t\r\n"
        "HostTable BEGIN\r\n  \r\n    # indented\r\nHostTable END\r\n"
    )
    assert scan(text, CFG) == (PeerTable("HostTable", 4, ()),)


def test_blocks_keep_file_order_and_begin_lines() -> None:
    text = "VendorTable BEGIN\nVendorTable END\nMaxAssociations 3\nAETable BEGIN\nAETable END"
    assert scan(text, CFG) == (
        PeerTable("VendorTable", 1, ()),
        SettingLine(3, Tok("MaxAssociations", 1), (Tok("3", 17),)),
        AETableBlock(4, ()),
    )


def test_table_markers_may_be_indented_and_commented() -> None:
    text = "  HostTable BEGIN # hosts\nx = (A,h,1)\n\tHostTable END # done"
    (block,) = scan(text, CFG)
    assert isinstance(block, PeerTable) and block.rows[0].line == 2


FORMAT_HOST = "a HostTable row is: name = (AETitle, HostName, Port), ... or name = othername, ..."
FORMAT_AE = "an AETable row is: AETitle StorageArea R|RW|W (maxStudies, maxBytes) ANY|peers"
PEERS = "peers (ANY, symbolic names or (AETitle, HostName, Port) triples)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            host_rows("a = (A, h)"),
            f"dcmqrscp.cfg:2:10: syntax error: found ')' (expected port number; {FORMAT_HOST})",
        ),
        (
            host_rows("a = (A, h, 1, 2)"),
            (
                "dcmqrscp.cfg:2:15: syntax error: found '2)' (expected ')' after the port"
                f" (a triple has exactly three values); {FORMAT_HOST})"
            ),
        ),
        (host_rows('a = (A, h, 1"'), "dcmqrscp.cfg:2:13: '\"' does not close '(' (expected ')')"),
        (
            host_rows('"Acme (CT)" = x'),
            (
                "dcmqrscp.cfg:2:1: unbalanced or nested quote '\"'"
                " (DCMTK ends a quoted value at any of \" ' ( ))"
            ),
        ),
        (
            host_rows('a = x "y'),
            "dcmqrscp.cfg:2:7: unbalanced or nested quote '\"'"
            " (DCMTK ends a quoted value at any of \" ' ( ))",
        ),
        (
            host_rows("a ="),
            f"dcmqrscp.cfg:2:4: syntax error: found end of line (expected {PEERS}; {FORMAT_HOST})",
        ),
        (
            ae_rows("A /x RW 9,1mb ANY"),
            (
                "dcmqrscp.cfg:2:9: syntax error: found '9'"
                f" (expected quota (maxStudies, maxBytesPerStudy); {FORMAT_AE})"
            ),
        ),
        (
            ae_rows("A /x RW (9, 1 mb) ANY"),
            "dcmqrscp.cfg:2:15: syntax error: found 'mb)'"
            f" (expected ')' after the quota size; {FORMAT_AE})",
        ),
        (
            ae_rows("A /x RW (9, 1mb)"),
            f"dcmqrscp.cfg:2:17: syntax error: found end of line (expected {PEERS}; {FORMAT_AE})",
        ),
        (
            ae_rows("A /x"),
            "dcmqrscp.cfg:2:5: syntax error: found end of line"
            f" (expected access (R, RW or W); {FORMAT_AE})",
        ),
        (ae_rows("A /x RW (9, 1mb'"), "dcmqrscp.cfg:2:16: \"'\" does not close '(' (expected ')')"),
        ("HostTable FOO", "dcmqrscp.cfg:1:11: HostTable followed by 'FOO' (expected BEGIN or END)"),
        ("AETable", "dcmqrscp.cfg:1:8: AETable followed by nothing (expected BEGIN or END)"),
        ("HostTable END", "dcmqrscp.cfg:1:1: 'HostTable END' without 'HostTable BEGIN'"),
        (
            "\nHostTable BEGIN\na = (A,h,1)\n",
            "dcmqrscp.cfg:2:1: 'HostTable BEGIN' is never closed (expected 'HostTable END')",
        ),
        (
            "HostTable BEGIN\nVendorTable BEGIN\n",
            (
                "dcmqrscp.cfg:2:1: 'VendorTable BEGIN' inside the HostTable block begun at line 1"
                " (expected 'HostTable END' first)"
            ),
        ),
        (
            "AETable BEGIN\nAETable STOP\n",
            "dcmqrscp.cfg:2:9: AETable followed by 'STOP' (expected BEGIN or END)",
        ),
        (
            'UserName = "dcmtk',
            "dcmqrscp.cfg:1:12: unbalanced or nested quote '\"'"
            " (DCMTK ends a quoted value at any of \" ' ( ))",
        ),
        (
            "= 104",
            "dcmqrscp.cfg:1:3: syntax error: found '104'"
            " (expected keyword; a setting is: Keyword = value)",
        ),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        scan(text, CFG)
    assert str(caught.value) == message


def test_error_carries_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        scan("\n\n" + host_rows("a = (A, h)"), Path("/etc/x.cfg"))
    assert (caught.value.path, caught.value.line, caught.value.col) == (Path("/etc/x.cfg"), 4, 10)


def test_a_word_starting_with_a_table_keyword_is_not_a_marker() -> None:
    assert scan("HostTables = 1", CFG) == (SettingLine(1, Tok("HostTables", 1), (Tok("1", 14),)),)
