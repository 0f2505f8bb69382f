"""dcmqrscp.cfg: read it exactly as DCMTK 3.6.7 does, refuse what DCMTK would silently misread.

``grammar`` knows the shape of each line, ``model`` the meaning of each value; this module walks the
file in order (names must be defined before use, as in DCMTK) and offers the public entry points.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pyqrscp.config.grammar import (
    AERow,
    AETableBlock,
    PeerRow,
    PeerTable,
    SettingLine,
    Statement,
    Tok,
    scan,
)
from pyqrscp.config.model import (
    DEFAULT_MAX_ASSOCIATIONS,
    DEFAULT_MAX_PDU_SIZE,
    MAX_PDU_SIZE,
    MIN_PDU_SIZE,
    Access,
    AEEntry,
    CharsetPolicy,
    Checker,
    Config,
    HostEntry,
    HttpConfig,
    Peer,
    Quota,
    Vendor,
    resolve_move_destination,
)
from pyqrscp.config.render import render_config
from pyqrscp.errors import ConfigError

__all__ = [
    "AEEntry",
    "Access",
    "CharsetPolicy",
    "Config",
    "ConfigError",
    "HostEntry",
    "HttpConfig",
    "Peer",
    "Quota",
    "Vendor",
    "load_config",
    "parse_config",
    "prepare_storage_areas",
    "render_config",
    "resolve_move_destination",
]

SETTINGS = (
    "NetworkTCPPort",
    "MaxPDUSize",
    "MaxAssociations",
    "SpecificCharacterSet",
    "UserName",
    "GroupName",
    "IndexDatabase",
)
HTTP_SETTINGS = ("HTTPPort", "HTTPToken", "HTTPUser", "HTTPPassword", "HTTPAllowOrigin")
"""pyqrscp's extensions for its HTTP listener (DCMTK refuses them)."""
#: Settings of pyqrscp's own (DCMTK refuses a config that has one).
EXTENSIONS = ("IndexDatabase",)
INDEX_DATABASE_SCHEMES = ("sqlite", "postgresql://", "postgres://")
OBSOLETE = (
    *("ApplicationTitle", "ApplicationContext", "ImplementationClass", "ImplementationVersion"),
    *("NetworkType", "Display", "DisplayPort"),
)
CHARSET_OPTIONS = ("fallback", "override", "abort", "discard", "transliterate")


def load_config(path: Path) -> Config:
    """Read and check a config file: UTF-8, or Latin-1 when it is not valid UTF-8.

    Raises
    ------
    ConfigError
        When the file cannot be read (line 0, column 0) or anything in it is wrong.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, 0, 0, "config file not found") from None
    except OSError as exc:
        raise ConfigError(path, 0, 0, f"cannot read config file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_config(text, Path(path))


def parse_config(text: str, path: Path) -> Config:
    """Parse config ``text``; ``path`` names it in messages and anchors relative storage areas.

    Raises
    ------
    ConfigError
        At the first problem, as ``FILE:LINE:COL: what is wrong (what was expected)``.
    """
    statements = scan(text.removeprefix("\ufeff"), path)
    check = Checker(path, [])
    settings = _settings([s for s in statements if isinstance(s, SettingLine)], check)
    hosts, vendors, ae_table = _tables(statements, check)
    return Config(
        path=path,
        network_tcp_port=_port(settings.get("NetworkTCPPort"), check),
        max_pdu_size=_max_pdu(settings.get("MaxPDUSize"), check),
        max_associations=_max_associations(settings.get("MaxAssociations"), check),
        specific_character_set=_charset(settings.get("SpecificCharacterSet"), check),
        user_name=_name(settings.get("UserName"), check),
        group_name=_name(settings.get("GroupName"), check),
        hosts=tuple(hosts.values()),
        vendors=vendors,
        ae_table=ae_table,
        warnings=tuple(check.warnings),
        http=_http(settings, check),
        index_database=_index_database(settings.get("IndexDatabase"), check),
    )


def prepare_storage_areas(config: Config) -> None:
    """Create missing storage areas; prove each writable by creating and deleting a probe file.

    Called after the switch to UserName/GroupName, so that the folders created belong to the user
    pyqrscp serves as and the probe proves what that user can do.

    Raises
    ------
    ConfigError
        Pointing at the AETable row's storage-area column when a folder is unusable.
    """
    for entry in config.ae_table:
        area = entry.storage_area
        try:
            area.mkdir(parents=True, exist_ok=True)
            if not os.access(area, os.W_OK | os.X_OK):
                raise PermissionError(f"no write permission on {area}")
            handle, probe = tempfile.mkstemp(prefix=".pyqrscp-probe-", dir=area)
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = (
                f"storage area '{area}' of {entry.ae_title} is unusable: {reason}"
                f" (expected a folder user {_user_name()} can create and write)"
            )
            raise ConfigError(config.path, entry.line, entry.storage_area_col, message) from None


def _user_name() -> str:
    """The name of the user pyqrscp runs as (after any switch to UserName)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, AttributeError, KeyError):  # Windows: neither pwd nor geteuid
        return os.environ.get("USERNAME") or os.environ.get("USER") or "(this process's)"


def _settings(lines: list[SettingLine], check: Checker) -> dict[str, SettingLine]:
    """The last line of each global setting, by keyword; unknown keywords are fatal, as in DCMTK."""
    seen: dict[str, SettingLine] = {}
    for setting in lines:
        keyword = setting.keyword
        if keyword.text in OBSOLETE:
            check.warn(
                setting.line, keyword.col, f"'{keyword.text}' is obsolete and ignored (as in DCMTK)"
            )
            continue
        if keyword.text not in SETTINGS + HTTP_SETTINGS:
            near = [k for k in SETTINGS + HTTP_SETTINGS + OBSOLETE
                    if k.lower() == keyword.text.lower()]
            expected = (
                f"did you mean '{near[0]}'? keywords are case-sensitive"
                if near
                else ("expected one of " + ", ".join(SETTINGS) + " or a table")
            )
            raise check.error(
                setting.line, keyword.col, f"unknown keyword '{keyword.text}' ({expected})"
            )
        if keyword.text in seen:
            check.warn(
                setting.line,
                keyword.col,
                f"{keyword.text} again; overrides line {seen[keyword.text].line}",
            )
        seen[keyword.text] = setting
    return seen


def _http(settings: dict[str, SettingLine], check: Checker) -> HttpConfig:
    """The HTTP listener's settings; ``HTTPAllowOrigin`` takes one or more origins."""
    def one(keyword: str) -> str | None:
        setting = settings.get(keyword)
        return _single(setting, check).text or None if setting is not None else None

    origins = settings.get("HTTPAllowOrigin")
    token, user = one("HTTPToken"), one("HTTPUser")
    if origins is not None and (token is not None or user is not None):
        for tok in origins.values:
            if tok.text == "*":
                raise check.error(origins.line, tok.col, "HTTPAllowOrigin * with HTTPToken or "
                                  "HTTPUser would let any web page use a browser's stored "
                                  "credentials; list the viewers' origins instead")
    return HttpConfig(
        address=one("HTTPPort"), token=token, user=user, password=one("HTTPPassword"),
        allow_origins=tuple(tok.text for tok in origins.values) if origins else ())


def _single(setting: SettingLine, check: Checker) -> Tok:
    """The one value of a setting such as ``NetworkTCPPort = 104``."""
    if len(setting.values) == 1:
        return setting.values[0]
    name = setting.keyword.text
    col = setting.values[1].col if setting.values else setting.keyword.col + len(name)
    raise check.error(setting.line, col, f"{name} takes one value, found {len(setting.values)}")


def _port(setting: SettingLine | None, check: Checker) -> int | None:
    if setting is None:
        return None
    tok = _single(setting, check)
    port = check.ranged(tok, setting.line, "NetworkTCPPort", 0, 65535)
    if port == 0:
        check.warn(setting.line, tok.col, "NetworkTCPPort 0 means the default port (as in DCMTK)")
        return None
    return port


def _max_pdu(setting: SettingLine | None, check: Checker) -> int:
    if setting is None:
        return DEFAULT_MAX_PDU_SIZE
    tok = _single(setting, check)
    if check.number(tok, setting.line, "MaxPDUSize") == 0:
        return DEFAULT_MAX_PDU_SIZE
    return check.ranged(tok, setting.line, "MaxPDUSize", MIN_PDU_SIZE, MAX_PDU_SIZE)


def _max_associations(setting: SettingLine | None, check: Checker) -> int:
    if setting is None:
        return DEFAULT_MAX_ASSOCIATIONS
    return check.ranged(_single(setting, check), setting.line, "MaxAssociations", 1, None)


def _index_database(setting: SettingLine | None, check: Checker) -> str | None:
    """``IndexDatabase = postgresql://user@host/db`` (a pyqrscp extension): where the storage
    areas' indexes live; ``sqlite`` (the default) keeps one file in each area."""
    if setting is None:
        return None
    tok = _single(setting, check)
    if tok.text != "sqlite" and not tok.text.startswith(INDEX_DATABASE_SCHEMES[1:]):
        raise check.error(setting.line, tok.col, f"IndexDatabase {tok.text!r} is not sqlite or "
                          "a postgresql://user@host:port/database URL (quote a URL that holds "
                          "'=' or ',')")
    return None if tok.text == "sqlite" else tok.text


def _name(setting: SettingLine | None, check: Checker) -> str | None:
    return (_single(setting, check).text or None) if setting is not None else None


def _charset(setting: SettingLine | None, check: Checker) -> CharsetPolicy:
    """DCMTK's options are lower-case words; any other value is the character set (only one)."""
    if setting is None:
        return CharsetPolicy(None, override=False, discard=False, transliterate=False)
    options: set[str] = set()
    charset: Tok | None = None
    for tok in setting.values:
        if tok.text in CHARSET_OPTIONS and not tok.quote:
            options.add(tok.text)
        elif tok.text.lower() in CHARSET_OPTIONS and not tok.quote:
            expected = "options are lower case: " + ", ".join(CHARSET_OPTIONS)
            raise check.error(setting.line, tok.col, f"unknown option '{tok.text}' ({expected})")
        elif charset is not None:
            expected = 'expected one; quote a character set that contains spaces: "ISO_IR 192"'
            raise check.error(
                setting.line, tok.col, f"second character set '{tok.text}' ({expected})"
            )
        else:
            charset = tok
    return CharsetPolicy(
        charset.text if charset else None,
        override="override" in options,
        discard="discard" in options,
        transliterate="transliterate" in options,
        fallback="fallback" in options,
        abort="abort" in options,
    )


def _tables(
    statements: tuple[Statement, ...], check: Checker
) -> tuple[dict[str, HostEntry], tuple[Vendor, ...], tuple[AEEntry, ...]]:
    """Walk the table blocks in file order; several Host/Vendor blocks add up, as in DCMTK."""
    hosts: dict[str, HostEntry] = {}
    vendors: list[Vendor] = []
    ae_table: dict[str, AEEntry] = {}
    ae_block: int | None = None
    for block in statements:
        if isinstance(block, PeerTable) and block.kind == "HostTable":
            for row in block.rows:
                _host_row(row, hosts, check)
        elif isinstance(block, PeerTable):
            vendors.extend(_vendor_row(row, hosts, check) for row in block.rows)
        elif isinstance(block, AETableBlock):
            if ae_block is not None:
                message = (
                    "second AETable block"
                    f" (DCMTK 3.6.7 would drop the one at line {ae_block}; merge them)"
                )
                raise check.error(block.line, 1, message)
            ae_block = block.line
            for ae_row in block.rows:
                _ae_row(ae_row, ae_table, hosts, check)
    return hosts, tuple(vendors), tuple(ae_table.values())


def _host_row(row: PeerRow, hosts: dict[str, HostEntry], check: Checker) -> None:
    name = row.name
    if not name.text:
        raise check.error(row.line, name.col, "empty symbolic name (expected a name)")
    if name.text in hosts:
        first = hosts[name.text].line
        raise check.error(
            row.line,
            name.col,
            f"duplicate symbolic name '{name.text}' (first defined at line {first})",
        )
    hosts[name.text] = HostEntry(
        name.text, check.resolve(row.peers, hosts, row.line, "HostTable"), row.line
    )


def _vendor_row(row: PeerRow, hosts: dict[str, HostEntry], check: Checker) -> Vendor:
    written = ", ".join(
        ref.text
        if isinstance(ref, Tok)
        else f"({ref.ae_title.text}, {ref.host.text}, {ref.port.text})"
        for ref in row.peers
    )
    peers = check.resolve(row.peers, hosts, row.line, "VendorTable")
    return Vendor(row.name.text, written, peers, row.line)


def _ae_row(
    row: AERow, ae_table: dict[str, AEEntry], hosts: dict[str, HostEntry], check: Checker
) -> None:
    ae_title = check.ae_title(row.ae_title, row.line, "AETable")
    if ae_title in ae_table:
        first = ae_table[ae_title].line
        raise check.error(
            row.line,
            row.ae_title.col,
            f"duplicate AE title '{ae_title}' (first defined at line {first})",
        )
    storage_area = check.storage_area(row.storage_area, row.line)
    access: Access = check.access(row.access, row.line)
    quota: Quota = check.quota(row.quota, row.line)
    first_peer = row.peers[0]
    peers: tuple[Peer, ...] | None
    if isinstance(first_peer, Tok) and first_peer.text == "ANY":
        peers = None
        if len(row.peers) > 1:
            check.warn(row.line, row.peers[1].col, "peers after ANY are ignored (as in DCMTK)")
    else:
        peers = check.resolve(row.peers, hosts, row.line, "AETable")
    ae_table[ae_title] = AEEntry(
        ae_title, storage_area, access, quota, peers, row.line, row.storage_area.col
    )
