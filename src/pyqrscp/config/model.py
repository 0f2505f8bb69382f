"""What a dcmqrscp.cfg means: frozen tables with every peer resolved, built from the syntax.

:func:`build_config` walks the statements of :mod:`pyqrscp.config.grammar` in file order, as DCMTK
does, so a symbolic name must be defined before it is used.  Every refusal names the line and the
column of the offending token; harmless oddities become warnings in :attr:`Config.warnings`.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from pyqrscp.config.grammar import PeerSyntax, QuotaSyntax, Tok, TripleSyntax
from pyqrscp.errors import ConfigError

DEFAULT_MAX_PDU_SIZE = 16384
MIN_PDU_SIZE, MAX_PDU_SIZE = 4096, 131072
DEFAULT_MAX_ASSOCIATIONS = 16
MAX_AE_TITLE_LENGTH = 16
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


class Access(enum.Enum):
    """What callers may do with an AE's storage area (DCMTK also reads ``WR`` as ``RW``)."""

    R = "R"
    RW = "RW"
    W = "W"

    @property
    def can_store(self) -> bool:
        """True when C-STORE into this AE is allowed."""
        return self in (Access.W, Access.RW)

    @property
    def can_query(self) -> bool:
        """True when C-FIND/C-MOVE/C-GET against this AE is allowed."""
        return self in (Access.R, Access.RW)


@dataclass(frozen=True, slots=True)
class Peer:
    """One remote application entity: who it is, and where to reach it."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HostEntry:
    """A HostTable symbolic name with its peers, groups of groups flattened in file order."""

    name: str
    peers: tuple[Peer, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Vendor:
    """A VendorTable row; ``symbolic_name`` is the right-hand side as written (comma-joined)."""

    vendor_name: str
    symbolic_name: str
    peers: tuple[Peer, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Quota:
    """How many studies an AE keeps, and how many bytes each study may use."""

    max_studies: int
    max_bytes_per_study: int


@dataclass(frozen=True, slots=True)
class CharsetPolicy:
    """``SpecificCharacterSet``: the response character set and DCMTK's conversion flags.

    DCMTK keeps ``fallback`` and ``override`` as independent flags; ``fallback`` is True when it was
    given (or when the setting is absent, DCMTK's default) and ``abort`` records the ``abort``
    option.
    """

    character_set: str | None
    override: bool
    discard: bool
    transliterate: bool
    fallback: bool = True
    abort: bool = False


@dataclass(frozen=True, slots=True)
class AEEntry:
    """An AETable row: our AE title, its storage area, rights, quota and peers (None = ANY)."""

    ae_title: str
    storage_area: Path
    access: Access
    quota: Quota
    peers: tuple[Peer, ...] | None
    line: int
    storage_area_col: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """pyqrscp's HTTP listener settings (extensions DCMTK does not know): ``HTTPPort``
    (``[HOST:]PORT``), ``HTTPToken``, ``HTTPUser``/``HTTPPassword``, ``HTTPAllowOrigin``."""

    address: str | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None
    allow_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, resolved; built only by :func:`pyqrscp.config.parse_config`."""

    path: Path
    network_tcp_port: int | None
    max_pdu_size: int
    max_associations: int
    specific_character_set: CharsetPolicy
    user_name: str | None
    group_name: str | None
    hosts: tuple[HostEntry, ...]
    vendors: tuple[Vendor, ...]
    ae_table: tuple[AEEntry, ...]
    warnings: tuple[str, ...]
    http: HttpConfig = field(default_factory=HttpConfig)
    index_database: str | None = None
    """``IndexDatabase``: a PostgreSQL URL shared by several nodes; None = SQLite per area."""

    def ae(self, ae_title: str) -> AEEntry | None:
        """The AETable row for a called AE title (exact match), or None."""
        return next((entry for entry in self.ae_table if entry.ae_title == ae_title), None)

    def host(self, name: str) -> HostEntry | None:
        """The HostTable entry for a symbolic name (exact match), or None."""
        return next((entry for entry in self.hosts if entry.name == name), None)

    def vendor_of(self, peer: Peer) -> Vendor | None:
        """The first vendor listing a peer with this AE title and host (host case-insensitive)."""
        host = peer.host.casefold()
        for vendor in self.vendors:
            if any(p.ae_title == peer.ae_title and p.host.casefold() == host for p in vendor.peers):
                return vendor
        return None

    def peers_named(self, ae_title: str) -> tuple[Peer, ...]:
        """Distinct HostTable peers with exactly this AE title in file order (move destinations)."""
        found = (p for entry in self.hosts for p in entry.peers if p.ae_title == ae_title)
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Checker:
    """Turns tokens into values, raising or warning at their exact place in ``path``."""

    path: Path
    warnings: list[str]

    def error(self, line: int, col: int, message: str) -> ConfigError:
        """The exception to raise for a problem at ``line:col``."""
        return ConfigError(self.path, line, col, message)

    def warn(self, line: int, col: int, message: str) -> None:
        """Record a warning rendered like an error, so editors can jump to it."""
        self.warnings.append(f"{self.path}:{line}:{col}: warning: {message}")

    def number(self, tok: Tok, line: int, what: str) -> int:
        """A decimal number (DCMTK's ``atoi``/``sscanf`` read ``12ab`` as 12 and ``ab`` as 0)."""
        if not re.fullmatch(r"[0-9]+", tok.text):
            raise self.error(
                line, tok.col, f"{what} '{tok.text}' is not a number (expected digits only)"
            )
        return int(tok.text)

    def ranged(self, tok: Tok, line: int, what: str, low: int, high: int | None) -> int:
        """A number within ``low..high`` (no upper bound when ``high`` is None)."""
        value = self.number(tok, line, what)
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            raise self.error(line, tok.col, f"{what} {value} is out of range (expected {bounds})")
        return value

    def ae_title(self, tok: Tok, line: int, where: str) -> str:
        """An AE title: 1..16 characters of the default repertoire, no backslash or control code."""
        text = tok.text
        problem = None
        if not text.strip(" "):
            problem = "is empty"
        elif len(text) > MAX_AE_TITLE_LENGTH:
            problem = f"has {len(text)} characters"
        elif text != text.strip(" "):
            problem = "has leading or trailing spaces"
        elif any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in text):
            problem = "contains a backslash or control character"
        if problem:
            expected = "expected 1 to 16 characters, no backslash or control characters"
            raise self.error(line, tok.col, f"AE title '{text}' in {where} {problem} ({expected})")
        return text

    def peer(self, triple: TripleSyntax, line: int, where: str) -> Peer:
        """A ``(AETitle, HostName, Port)`` triple, AE title first as DCMTK's code reads it."""
        ae_title = self.ae_title(triple.ae_title, line, where)
        port = self.ranged(triple.port, line, f"port in {where}", 1, 65535)
        return Peer(ae_title, triple.host.text, port)

    def access(self, tok: Tok, line: int) -> Access:
        """``R``, ``RW`` or ``W``; ``WR`` is ``RW`` (DCMTK treats it as writable)."""
        text = "RW" if tok.text == "WR" else tok.text
        if text not in ("R", "RW", "W"):
            raise self.error(line, tok.col, f"bad access '{tok.text}' (expected R, RW or W)")
        return Access(text)

    def quota(self, quota: QuotaSyntax, line: int) -> Quota:
        """``(maxStudies, size)``; the size needs a unit b/kb/mb/gb (1024-based, any case)."""
        studies = self.ranged(quota.max_studies, line, "quota max studies", 1, None)
        size = quota.max_bytes
        match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", size.text)
        expected = "expected a whole number with unit b, kb, mb or gb, e.g. 1024mb"
        if match is None:
            raise self.error(line, size.col, f"bad quota size '{size.text}' ({expected})")
        if not match.group(2):
            expected += "; DCMTK 3.6.7 reads a bare number as no limit"
            raise self.error(line, size.col, f"quota size '{size.text}' has no unit ({expected})")
        factor = _UNITS.get(match.group(2).lower())
        if factor is None:
            raise self.error(line, size.col, f"unknown quota unit '{match.group(2)}' ({expected})")
        if int(match.group(1)) == 0:
            raise self.error(line, size.col, f"quota size '{size.text}' is zero ({expected})")
        return Quota(studies, int(match.group(1)) * factor)

    def storage_area(self, tok: Tok, line: int) -> Path:
        """Absolute paths (POSIX, or Windows with a drive) as given; others below the cfg folder.

        Warns only when the two readings differ in fact: a folder of that name exists in the
        working directory (where dcmqrscp would have stored) and is not the one used.
        """
        if not tok.text.strip():
            raise self.error(line, tok.col, "empty storage area (expected a folder)")
        if Path(tok.text).is_absolute():
            return Path(tok.text)
        windows = PureWindowsPath(tok.text)
        if windows.drive and windows.is_absolute():
            if os.name != "nt":
                self.warn(
                    line, tok.col, f"storage area '{tok.text}' is a Windows path; used as written"
                )
            return Path(tok.text)
        resolved = self.path.absolute().parent / tok.text
        as_dcmtk = Path(tok.text).absolute()
        if as_dcmtk.is_dir() and as_dcmtk.resolve() != resolved.resolve():
            self.warn(
                line,
                tok.col,
                f"relative storage area '{tok.text}' is taken relative to the config file's"
                f" folder ({resolved}), not the working directory as in DCMTK ({as_dcmtk})",
            )
        return resolved

    def resolve(
        self, refs: tuple[PeerSyntax, ...], hosts: dict[str, HostEntry], line: int, where: str
    ) -> tuple[Peer, ...]:
        """Expand triples and symbolic names (defined earlier) into peers, in order."""
        peers: list[Peer] = []
        for ref in refs:
            if isinstance(ref, TripleSyntax):
                peers.append(self.peer(ref, line, where))
            elif ref.text in hosts:
                peers.extend(hosts[ref.text].peers)
            else:
                hint = (
                    "a peer triple needs commas: (AETitle, HostName, Port)"
                    if " " in ref.text
                    else ("expected a name defined earlier in the HostTable")
                )
                message = f"undefined symbolic name '{ref.text}' in {where} ({hint})"
                raise self.error(line, ref.col, message)
        return tuple(peers)


def resolve_move_destination(config: Config, move_destination: str) -> Peer | None:
    """Where a C-MOVE sends to: the first HostTable triple with that AE title (case-sensitive)."""
    for entry in config.ae_table:
        for peer in entry.peers or ():
            if peer.ae_title == move_destination:
                return peer
    peers = config.peers_named(move_destination)
    return peers[0] if peers else None


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
