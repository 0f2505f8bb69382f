"""Random valid configs with DCMTK's freedoms (gaps, quotes, comments, CRLF) parse back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pyqrscp.config import Access, AEEntry, HostEntry, Peer, Quota, Vendor, parse_config

CFG = Path("/srv/pacs/dcmqrscp.cfg")
AE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+"
UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
RESERVED = {"ANY", "HostTable", "VendorTable", "AETable"}

ae_titles = st.text(AE_CHARS, min_size=1, max_size=16).filter(
    lambda title: title not in RESERVED  # a row starting "VendorTable" is a table line
)
symbolic_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda name: name not in RESERVED
)
host_names = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True)
ports = st.integers(1, 65535)
gaps = st.sampled_from([" ", "\t", " = ", ", ", "  ", ",", "=", " ,\t"])
comments = st.sampled_from(["", "", " # a comment", "\t#x", " #"])


@dataclass(frozen=True)
class Written:
    """A fragment of config text and the peers it stands for."""

    text: str
    peers: tuple[Peer, ...]


@st.composite
def triples(draw: st.DrawFn) -> Written:
    peer = Peer(draw(ae_titles), draw(host_names), draw(ports))
    opener, closer = draw(st.sampled_from([("(", ")"), ('"', '"'), ("'", "'")]))
    pad = draw(st.sampled_from(["", " "]))
    first, second = draw(st.sampled_from([", ", ",", " ,", "\t,"])), draw(gaps)
    text = f"{opener}{pad}{peer.ae_title}{first}{peer.host}{second}{peer.port}{pad}{closer}"
    return Written(text, (peer,))


@st.composite
def peer_lists(draw: st.DrawFn, defined: dict[str, tuple[Peer, ...]]) -> Written:
    """One or more triples or names already defined, joined by random gaps."""
    choices = [triples()]
    if defined:
        choices.append(st.sampled_from(sorted(defined)).map(lambda n: Written(n, defined[n])))
    items = draw(st.lists(st.one_of(*choices), min_size=1, max_size=4))
    text = "".join(
        item.text + (draw(gaps) if i < len(items) - 1 else "") for i, item in enumerate(items)
    )
    return Written(text, tuple(peer for item in items for peer in item.peers))


@dataclass(frozen=True)
class Generated:
    text: str
    hosts: tuple[HostEntry, ...]
    vendors: tuple[Vendor, ...]
    ae_table: tuple[AEEntry, ...]


def row(draw: st.DrawFn, fields: list[str]) -> str:
    indent = draw(st.sampled_from(["", "", " ", "\t", "   "]))
    body = fields[0] + "".join(draw(gaps) + field for field in fields[1:])
    return indent + body + draw(comments)


@st.composite
def ae_rows(
    draw: st.DrawFn, defined: dict[str, tuple[Peer, ...]], title: str
) -> tuple[str, AEEntry]:
    written_title = f'"{title}"' if " " in title or draw(st.booleans()) else title
    area = draw(st.from_regex(r"/[a-zA-Z0-9_/.-]{0,20}", fullmatch=True))
    access = draw(st.sampled_from(list(Access)))
    studies, amount = draw(st.integers(1, 10_000)), draw(st.integers(1, 4096))
    unit = draw(st.sampled_from(sorted(UNITS)))
    unit_text = "".join(c.upper() if draw(st.booleans()) else c for c in unit)
    quota = f"({draw(st.sampled_from(['', ' ']))}{studies}, {amount}{unit_text})"
    peers = None if draw(st.booleans()) else draw(peer_lists(defined))
    fields = [written_title, area, access.value, quota, peers.text if peers else "ANY"]
    quota_value = Quota(studies, amount * UNITS[unit])
    entry = AEEntry(title, Path(area), access, quota_value, peers.peers if peers else None, 0)
    return row(draw, fields), entry


@st.composite
def configs(draw: st.DrawFn) -> Generated:
    lines: list[str] = [f"NetworkTCPPort = {draw(ports)}"]

    def add(text: str) -> int:
        for _ in range(draw(st.integers(0, 2))):
            lines.append(
                draw(st.sampled_from(["", "# comment", "   # indented comment", "\t", "  "]))
            )
        lines.append(text)
        return len(lines)

    defined: dict[str, tuple[Peer, ...]] = {}
    hosts: list[HostEntry] = []
    add("HostTable BEGIN")
    for name in draw(st.lists(symbolic_names, max_size=6, unique=True)):
        peers = draw(peer_lists(defined))
        hosts.append(HostEntry(name, peers.peers, add(row(draw, [name, peers.text]))))
        defined[name] = peers.peers
    add("HostTable END")
    vendors: list[Vendor] = []
    add("VendorTable BEGIN")
    if defined:
        for vendor_name in draw(
            st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,20}", fullmatch=True), max_size=3)
        ):
            name = draw(st.sampled_from(sorted(defined)))
            line = add(row(draw, [f'"{vendor_name}"', name]))
            vendors.append(Vendor(vendor_name, name, defined[name], line))
    add("VendorTable END")
    entries: list[AEEntry] = []
    add("AETable BEGIN")
    titles = st.one_of(ae_titles, st.from_regex(r"[A-Z][A-Z ]{0,14}[A-Z]", fullmatch=True))
    for title in draw(st.lists(titles, max_size=5, unique=True)):
        text, entry = draw(ae_rows(defined, title))
        line = add(text)
        entries.append(
            AEEntry(
                entry.ae_title, entry.storage_area, entry.access, entry.quota, entry.peers, line
            )
        )
    add("AETable END")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return Generated(newline.join(lines) + newline, tuple(hosts), tuple(vendors), tuple(entries))


@settings(max_examples=200, deadline=None)
@given(configs())
def test_generated_configs_parse_to_the_intended_model(generated: Generated) -> None:
    config = parse_config(generated.text, CFG)
    assert config.hosts == generated.hosts
    assert config.vendors == generated.vendors
    assert config.ae_table == generated.ae_table
    assert config.warnings == ()
