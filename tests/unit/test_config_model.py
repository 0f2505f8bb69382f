"""What a dcmqrscp.cfg means: resolved tables, semantic errors and warnings, located by column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyqrscp.config import (
    Access,
    AEEntry,
    CharsetPolicy,
    Config,
    ConfigError,
    HostEntry,
    Peer,
    Quota,
    Vendor,
    load_config,
    parse_config,
    prepare_storage_areas,
    render_config,
)

CFG = Path("/srv/pacs/dcmqrscp.cfg")
DCMTK_SAMPLE = Path("/etc/dcmtk/dcmqrscp.cfg")
GIB = 1024**3

# From a Chinese Windows tutorial, verbatim.
WALKTHROUGH = r"""NetworkTCPPort = 10001
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
acme1 = (ACME1, PC098, 5678)
acmeCTcompany = acme1
HostTable END
VendorTable BEGIN
"Acme CT Company" = acmeCTcompany
VendorTable END
AETable BEGIN
ACME_STORE C:\temp\PACS RW (9, 1024mb) acmeCTcompany
AETable END
"""

ACME1 = Peer("ACME1", "PC098", 5678)
DEFAULT_CHARSET = CharsetPolicy(None, override=False, discard=False, transliterate=False)


def hosts(*rows: str) -> str:
    return "HostTable BEGIN\n" + "\n".join(rows) + "\nHostTable END\n"


def aes(*rows: str) -> str:
    return "AETable BEGIN\n" + "\n".join(rows) + "\nAETable END\n"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("dcmqrscp.cfg"))
    return str(caught.value)


def test_walkthrough_config() -> None:
    config = parse_config(WALKTHROUGH, CFG)
    assert config == Config(
        path=CFG,
        network_tcp_port=10001,
        max_pdu_size=16384,
        max_associations=16,
        specific_character_set=DEFAULT_CHARSET,
        user_name=None,
        group_name=None,
        hosts=(HostEntry("acme1", (ACME1,), 5), HostEntry("acmeCTcompany", (ACME1,), 6)),
        vendors=(Vendor("Acme CT Company", "acmeCTcompany", (ACME1,), 9),),
        ae_table=(
            AEEntry("ACME_STORE", Path(r"C:\temp\PACS"), Access.RW, Quota(9, GIB), (ACME1,), 12),
        ),
        warnings=config.warnings,
    )
    assert config.ae_table[0].storage_area_col == 12


def test_walkthrough_with_crlf_and_windows_path_warning() -> None:
    config = parse_config(WALKTHROUGH.replace("\n", "\r\n"), CFG)
    assert config.ae("ACME_STORE") == parse_config(WALKTHROUGH, CFG).ae("ACME_STORE")
    assert config.warnings == (
        rf"{CFG}:12:12: warning: storage area 'C:\temp\PACS' is a Windows path; used as written",
    )


def uncommented_sample(text: str) -> str:
    """Uncomment the examples of DCMTK's sample, keeping every other comment."""
    pattern = r"(?m)^# ?(?=SpecificCharacterSet|acme|united|\"Acme|\"United|ACME_|UNITED_|READ)"
    return re.sub(pattern, "", text)


@pytest.mark.skipif(not DCMTK_SAMPLE.exists(), reason="DCMTK's sample config is not installed")
def test_dcmtk_sample_config_with_examples_uncommented() -> None:
    config = parse_config(uncommented_sample(DCMTK_SAMPLE.read_text()), DCMTK_SAMPLE)
    acme = (Peer("ACME1", "acmehost1", 5678), Peer("ACME2", "acmehost2", 5678))
    united = (Peer("UNITED1", "unitedhost1", 104), Peer("UNITED2", "unitedhost2", 104))
    db = Path("/var/lib/dcmtk/db")
    assert (config.network_tcp_port, config.max_pdu_size, config.max_associations) == (
        104,
        16384,
        16,
    )
    assert (config.user_name, config.group_name) == ("dcmtk", "dcmtk")
    assert config.specific_character_set == CharsetPolicy(
        "ISO_IR 192", override=True, discard=True, transliterate=True, fallback=False
    )
    assert [(h.name, h.peers) for h in config.hosts] == [
        ("acme1", acme[:1]),
        ("acme2", acme[1:]),
        ("acmeCTcompany", acme),
        ("united1", united[:1]),
        ("united2", united[1:]),
        ("unitedMRcompany", united),
    ]
    assert [(v.vendor_name, v.symbolic_name, v.peers) for v in config.vendors] == [
        ("Acme CT Company", "acmeCTcompany", acme),
        ("United MR Company", "unitedMRcompany", united),
    ]
    assert [(e.ae_title, e.storage_area, e.access, e.quota, e.peers) for e in config.ae_table] == [
        ("ACME_STORE", db / "ACME_STORE", Access.RW, Quota(9, GIB), acme),
        ("UNITED_STORE", db / "UNITED_STORE", Access.RW, Quota(9, GIB), united),
        ("READWRITE", db / "READWRITE", Access.RW, Quota(10, GIB), None),
        ("READ", db / "READ", Access.R, Quota(200, GIB), None),
    ]
    assert (
        len(config.warnings) == 1
        and "SpecificCharacterSet again; overrides line" in config.warnings[0]
    )


@pytest.mark.skipif(not DCMTK_SAMPLE.exists(), reason="DCMTK's sample config is not installed")
def test_dcmtk_sample_config_as_shipped() -> None:
    config = load_config(DCMTK_SAMPLE)
    assert (config.hosts, config.vendors, config.ae_table, config.warnings) == ((), (), (), ())


def test_groups_of_groups_are_flattened_in_order() -> None:
    text = hosts("a = (A, h1, 1)", "b = (B, h2, 2), a", "c = b, (C, h3, 3), a")
    config = parse_config(text, CFG)
    a, b, c = Peer("A", "h1", 1), Peer("B", "h2", 2), Peer("C", "h3", 3)
    assert config.host("c") == HostEntry("c", (b, a, c, a), 4)
    assert config.host("C") is None


def test_lookups() -> None:
    text = hosts("a = (A, Host1, 1)", "b = (A, host2, 2), a", "v = (V, vh, 3)")
    text += 'VendorTable BEGIN\n"Vendor B" = b\n"Vendor V" = v, a\nVendorTable END\n'
    text += aes("STORE /d RW (1, 1gb) a", "ALL /e R (1, 1kb) ANY")
    config = parse_config(text, CFG)
    assert config.peers_named("A") == (Peer("A", "Host1", 1), Peer("A", "host2", 2))
    assert config.peers_named("a") == ()
    assert config.vendor_of(Peer("A", "HOST1", 999)) == config.vendors[0]
    vendor_v = Vendor("Vendor V", "v, a", (Peer("V", "vh", 3), Peer("A", "Host1", 1)), 8)
    assert config.vendor_of(Peer("V", "vh", 3)) == vendor_v
    assert config.vendor_of(Peer("X", "vh", 3)) is None
    store, any_peer = config.ae("STORE"), config.ae("ALL")
    assert store is not None and store.peers == (Peer("A", "Host1", 1),)
    assert any_peer is not None and any_peer.peers is None
    assert config.ae("store") is None


def test_access_properties() -> None:
    assert [(a.can_store, a.can_query) for a in Access] == [
        (False, True),
        (True, True),
        (True, False),
    ]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1b", 1),
        ("7B", 7),
        ("2kb", 2048),
        ("3Kb", 3072),
        ("1mb", 1024**2),
        ("4MB", 4 * 1024**2),
        ("2gB", 2 * GIB),
    ],
)
def test_quota_units(size: str, expected: int) -> None:
    config = parse_config(aes(f"A /d RW (3, {size}) ANY"), CFG)
    assert config.ae_table[0].quota == Quota(3, expected)


@pytest.mark.parametrize(
    ("access", "expected"), [("R", Access.R), ("RW", Access.RW), ("W", Access.W), ("WR", Access.RW)]
)
def test_access_values(access: str, expected: Access) -> None:
    assert parse_config(aes(f"A /d {access} (3, 1mb) ANY"), CFG).ae_table[0].access == expected


@pytest.mark.parametrize(
    ("area", "expected"),
    [
        ("/abs/path", Path("/abs/path")),
        ("rel/dir", CFG.parent / "rel/dir"),
        (r"C:\temp\PACS", Path(r"C:\temp\PACS")),
        (r'"D:\My Files\PACS"', Path(r"D:\My Files\PACS")),
        (r"\\server\share\pacs", Path(r"\\server\share\pacs")),
    ],
)
def test_storage_area_resolution(area: str, expected: Path) -> None:
    assert parse_config(aes(f"A {area} RW (1, 1mb) ANY"), CFG).ae_table[0].storage_area == expected


@pytest.mark.parametrize(
    ("setting", "attribute", "expected"),
    [
        ("NetworkTCPPort = 1", "network_tcp_port", 1),
        ("NetworkTCPPort=65535", "network_tcp_port", 65535),
        ("MaxPDUSize = 0", "max_pdu_size", 16384),
        ("MaxPDUSize = 4096", "max_pdu_size", 4096),
        ("MaxPDUSize = 131072", "max_pdu_size", 131072),
        ("MaxAssociations = 1", "max_associations", 1),
        ('UserName = "dicom user"', "user_name", "dicom user"),
        ('GroupName = ""', "group_name", None),
        ("", "network_tcp_port", None),
        ("", "max_pdu_size", 16384),
        ("", "max_associations", 16),
        ("", "specific_character_set", DEFAULT_CHARSET),
        ("SpecificCharacterSet = fallback", "specific_character_set", DEFAULT_CHARSET),
        (
            "SpecificCharacterSet = GB18030, override, abort",
            "specific_character_set",
            CharsetPolicy("GB18030", True, False, False, fallback=False, abort=True),
        ),
        (
            "SpecificCharacterSet = 'ISO_IR 100', fallback, discard",
            "specific_character_set",
            CharsetPolicy("ISO_IR 100", False, True, False, fallback=True),
        ),
    ],
)
def test_global_settings(setting: str, attribute: str, expected: object) -> None:
    assert getattr(parse_config(setting, CFG), attribute) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            hosts("a = (A, h, 1)") + aes(*[""] * 12, "    X /d RW (1, 1mb) a, acme3"),
            "dcmqrscp.cfg:17:25: undefined symbolic name 'acme3' in AETable"
            " (expected a name defined earlier in the HostTable)",
        ),
        (
            hosts("a = b", "b = (B, h, 1)"),
            "dcmqrscp.cfg:2:5: undefined symbolic name 'b' in HostTable"
            " (expected a name defined earlier in the HostTable)",
        ),
        (
            hosts("a = a"),
            "dcmqrscp.cfg:2:5: undefined symbolic name 'a' in HostTable"
            " (expected a name defined earlier in the HostTable)",
        ),
        (
            hosts("a = (A h 1)"),
            "dcmqrscp.cfg:2:5: undefined symbolic name 'A h 1' in HostTable"
            " (a peer triple needs commas: (AETitle, HostName, Port))",
        ),
        (
            aes("X /d RW (1, 1mb) a") + hosts("a = (A, h, 1)"),
            "dcmqrscp.cfg:2:18: undefined symbolic name 'a' in AETable"
            " (expected a name defined earlier in the HostTable)",
        ),
        (
            'VendorTable BEGIN\n"V" = nothing\nVendorTable END',
            "dcmqrscp.cfg:2:7: undefined symbolic name 'nothing' in VendorTable"
            " (expected a name defined earlier in the HostTable)",
        ),
        (
            hosts("a = (A, h, 1)", "a = (B, h, 1)"),
            "dcmqrscp.cfg:3:1: duplicate symbolic name 'a' (first defined at line 2)",
        ),
        (hosts('"" = (A, h, 1)'), "dcmqrscp.cfg:2:1: empty symbolic name (expected a name)"),
        (
            aes("X /d RW (1, 1mb) ANY", "X /e RW (1, 1mb) ANY"),
            "dcmqrscp.cfg:3:1: duplicate AE title 'X' (first defined at line 2)",
        ),
        (
            aes("ABCDEFGHIJKLMNOPQ /d RW (1, 1mb) ANY"),
            "dcmqrscp.cfg:2:1: AE title 'ABCDEFGHIJKLMNOPQ' in AETable has 17 characters"
            " (expected 1 to 16 characters, no backslash or control characters)",
        ),
        (
            aes('"" /d RW (1, 1mb) ANY'),
            "dcmqrscp.cfg:2:1: AE title '' in AETable is empty"
            " (expected 1 to 16 characters, no backslash or control characters)",
        ),
        (
            aes('" X" /d RW (1, 1mb) ANY'),
            "dcmqrscp.cfg:2:1: AE title ' X' in AETable has leading or trailing spaces"
            " (expected 1 to 16 characters, no backslash or control characters)",
        ),
        (
            hosts(r"a = (A\B, h, 1)"),
            r"dcmqrscp.cfg:2:6: AE title 'A\B' in HostTable contains a backslash or control "
            r"character (expected 1 to 16 characters, no backslash or control characters)",
        ),
        (
            hosts("a = (ABCDEFGHIJKLMNOPQ, h, 1)"),
            "dcmqrscp.cfg:2:6: AE title 'ABCDEFGHIJKLMNOPQ' in HostTable has 17 characters"
            " (expected 1 to 16 characters, no backslash or control characters)",
        ),
        (
            hosts("a = (A, h, 0)"),
            "dcmqrscp.cfg:2:12: port in HostTable 0 is out of range (expected 1..65535)",
        ),
        (
            hosts("a = (A, h, 65536)"),
            "dcmqrscp.cfg:2:12: port in HostTable 65536 is out of range (expected 1..65535)",
        ),
        (
            hosts("a = (A, h, http)"),
            "dcmqrscp.cfg:2:12: port in HostTable 'http' is not a number (expected digits only)",
        ),
        (
            aes("X /d RW (1, 1mb) (A, h, 1x)"),
            "dcmqrscp.cfg:2:25: port in AETable '1x' is not a number (expected digits only)",
        ),
        (aes("X /d rw (1, 1mb) ANY"), "dcmqrscp.cfg:2:6: bad access 'rw' (expected R, RW or W)"),
        (aes("X /d RWX (1, 1mb) ANY"), "dcmqrscp.cfg:2:6: bad access 'RWX' (expected R, RW or W)"),
        (
            aes("X /d RW (0, 1mb) ANY"),
            "dcmqrscp.cfg:2:10: quota max studies 0 is out of range (expected at least 1)",
        ),
        (
            aes("X /d RW (-1, 1mb) ANY"),
            "dcmqrscp.cfg:2:10: quota max studies '-1' is not a number (expected digits only)",
        ),
        (
            aes("X /d RW (9, 1024) ANY"),
            "dcmqrscp.cfg:2:13: quota size '1024' has no unit (expected a whole number with unit "
            "b, kb, mb or gb, e.g. 1024mb; DCMTK 3.6.7 reads a bare number as no limit)",
        ),
        (
            aes("X /d RW (9, 1tb) ANY"),
            "dcmqrscp.cfg:2:13: unknown quota unit 'tb'"
            " (expected a whole number with unit b, kb, mb or gb, e.g. 1024mb)",
        ),
        (
            aes("X /d RW (9, 1.5gb) ANY"),
            "dcmqrscp.cfg:2:13: bad quota size '1.5gb'"
            " (expected a whole number with unit b, kb, mb or gb, e.g. 1024mb)",
        ),
        (
            aes("X /d RW (9, 0mb) ANY"),
            "dcmqrscp.cfg:2:13: quota size '0mb' is zero"
            " (expected a whole number with unit b, kb, mb or gb, e.g. 1024mb)",
        ),
        (aes('X "" RW (9, 1mb) ANY'), "dcmqrscp.cfg:2:3: empty storage area (expected a folder)"),
        (
            aes("A /d RW (1, 1mb) ANY") + "\n" + aes("B /e RW (1, 1mb) ANY"),
            "dcmqrscp.cfg:5:1: second AETable block"
            " (DCMTK 3.6.7 would drop the one at line 1; merge them)",
        ),
        (
            "NetworkTCPPort = abc",
            "dcmqrscp.cfg:1:18: NetworkTCPPort 'abc' is not a number (expected digits only)",
        ),
        (
            "NetworkTCPPort = 104abc",
            "dcmqrscp.cfg:1:18: NetworkTCPPort '104abc' is not a number (expected digits only)",
        ),
        (
            "NetworkTCPPort = 70000",
            "dcmqrscp.cfg:1:18: NetworkTCPPort 70000 is out of range (expected 0..65535)",
        ),
        ("NetworkTCPPort = 104 105", "dcmqrscp.cfg:1:22: NetworkTCPPort takes one value, found 2"),
        ("NetworkTCPPort =", "dcmqrscp.cfg:1:15: NetworkTCPPort takes one value, found 0"),
        (
            "MaxPDUSize = 4095",
            "dcmqrscp.cfg:1:14: MaxPDUSize 4095 is out of range (expected 4096..131072)",
        ),
        (
            "MaxPDUSize = 131073",
            "dcmqrscp.cfg:1:14: MaxPDUSize 131073 is out of range (expected 4096..131072)",
        ),
        (
            "MaxAssociations = 0",
            "dcmqrscp.cfg:1:19: MaxAssociations 0 is out of range (expected at least 1)",
        ),
        (
            "\n  Port = 104",
            "dcmqrscp.cfg:2:3: unknown keyword 'Port' (expected one of NetworkTCPPort, "
            "MaxPDUSize, MaxAssociations, SpecificCharacterSet, UserName, GroupName, "
            "IndexDatabase or a table)",
        ),
        (
            "networktcpport = 104",
            "dcmqrscp.cfg:1:1: unknown keyword 'networktcpport'"
            " (did you mean 'NetworkTCPPort'? keywords are case-sensitive)",
        ),
        (
            "SpecificCharacterSet = ISO_IR 100",
            "dcmqrscp.cfg:1:31: second character set '100'"
            " (expected one; quote a character set that contains spaces: \"ISO_IR 192\")",
        ),
        (
            "SpecificCharacterSet = 'ISO_IR 100', Override",
            "dcmqrscp.cfg:1:38: unknown option 'Override'"
            " (options are lower case: fallback, override, abort, discard, transliterate)",
        ),
    ],
)
def test_semantic_errors(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (
            "ApplicationTitle = OLD",
            "dcmqrscp.cfg:1:1: warning: 'ApplicationTitle' is obsolete and ignored (as in DCMTK)",
        ),
        (
            "MaxAssociations = 3\nMaxAssociations = 4",
            "dcmqrscp.cfg:2:1: warning: MaxAssociations again; overrides line 1",
        ),
        (
            "NetworkTCPPort = 0",
            "dcmqrscp.cfg:1:18: warning: NetworkTCPPort 0 means the default port (as in DCMTK)",
        ),
        (
            hosts("a = (A,h,1)") + aes("X /d RW (1, 1mb) ANY a"),
            "dcmqrscp.cfg:5:22: warning: peers after ANY are ignored (as in DCMTK)",
        ),
    ],
)
def test_warnings(text: str, warning: str) -> None:
    assert parse_config(text, Path("dcmqrscp.cfg")).warnings == (warning,)


def test_relative_storage_area_warns_only_when_dcmtk_would_use_another_existing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, work_dir = tmp_path / "etc", tmp_path / "work"
    config_dir.mkdir()
    work_dir.mkdir()
    monkeypatch.chdir(work_dir)
    text = aes("X db/x RW (1, 1mb) ANY")
    assert parse_config(text, config_dir / "dcmqrscp.cfg").warnings == ()
    (work_dir / "db" / "x").mkdir(parents=True)
    assert parse_config(text, config_dir / "dcmqrscp.cfg").warnings == (
        f"{config_dir / 'dcmqrscp.cfg'}:2:3: warning: relative storage area 'db/x' is taken "
        f"relative to the config file's folder ({config_dir / 'db/x'}), not the working "
        f"directory as in DCMTK ({work_dir / 'db/x'})",
    )
    monkeypatch.chdir(config_dir)
    (config_dir / "db" / "x").mkdir(parents=True)
    assert parse_config(text, Path("dcmqrscp.cfg")).warnings == ()


def test_repeated_setting_keeps_the_last_value() -> None:
    assert parse_config("MaxAssociations = 3\nMaxAssociations = 4", CFG).max_associations == 4


def test_several_host_and_vendor_blocks_add_up() -> None:
    text = hosts("a = (A, h, 1)") + hosts("b = a") + 'VendorTable BEGIN\n"V" = b\nVendorTable END\n'
    config = parse_config(text, CFG)
    assert [h.name for h in config.hosts] == ["a", "b"] and config.vendors[0].peers == (
        Peer("A", "h", 1),
    )


@pytest.mark.parametrize(
    ("prefix", "vendor"),
    [(b"\xef\xbb\xbf", "M\u00fcller".encode()), (b"", "M\u00fcller".encode("latin-1"))],
)
def test_load_config_decodes_utf8_with_bom_or_latin1(
    tmp_path: Path, prefix: bytes, vendor: bytes
) -> None:
    path = tmp_path / "dcmqrscp.cfg"
    path.write_bytes(
        prefix
        + b'UserName = dcmtk\nVendorTable BEGIN\n"'
        + vendor
        + b'" = (A, h, 1)\nVendorTable END\n'
    )
    config = load_config(path)
    assert (config.user_name, config.vendors[0].vendor_name, config.path) == (
        "dcmtk",
        "M\u00fcller",
        path,
    )


def test_load_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.cfg")
    assert (caught.value.line, caught.value.col) == (0, 0)
    assert str(caught.value) == f"{tmp_path / 'missing.cfg'}: config file not found"


def test_prepare_storage_areas_creates_folders(tmp_path: Path) -> None:
    config = parse_config(
        aes(f"A {tmp_path}/a/b/c RW (1, 1mb) ANY", "B rel RW (1, 1mb) ANY"), tmp_path / "x.cfg"
    )
    prepare_storage_areas(config)
    assert (tmp_path / "a/b/c").is_dir() and (tmp_path / "rel").is_dir()
    assert list((tmp_path / "rel").iterdir()) == []


def test_prepare_storage_areas_points_at_the_column(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    config = parse_config(
        aes("", f"BLOCKED   {tmp_path}/file/sub RW (1, 1mb) ANY"), tmp_path / "x.cfg"
    )
    with pytest.raises(ConfigError) as caught:
        prepare_storage_areas(config)
    assert (caught.value.line, caught.value.col) == (3, 11)
    assert (
        "storage area" in caught.value.message and "of BLOCKED is unusable" in caught.value.message
    )


def test_render_config_is_stable() -> None:
    text = WALKTHROUGH.replace("C:\\temp\\PACS", "/var/pacs") + "UserName = dcmtk\n"
    assert render_config(parse_config(text, CFG)) == (
        f"Config file: {CFG}\n"
        "\n"
        "Global parameters:\n"
        "  NetworkTCPPort       10001\n"
        "  MaxPDUSize           16384\n"
        "  MaxAssociations      16\n"
        "  SpecificCharacterSet (not set); options: fallback\n"
        "  UserName             dcmtk\n"
        "  GroupName            (not set)\n"
        "\n"
        "HostTable: 2 entries\n"
        "  acme1 (line 5): 1 peers\n"
        "    (ACME1, PC098, 5678)\n"
        "  acmeCTcompany (line 6): 1 peers\n"
        "    (ACME1, PC098, 5678)\n"
        "\n"
        "VendorTable: 1 entries\n"
        "  'Acme CT Company' = acmeCTcompany (line 9)\n"
        "    (ACME1, PC098, 5678)\n"
        "\n"
        "AETable: 1 entries\n"
        "  ACME_STORE (line 12)\n"
        "    storage area: /var/pacs\n"
        "    access:       RW\n"
        "    quota:        9 studies, 1073741824 bytes per study (1gb)\n"
        "    peers:        1\n"
        "      (ACME1, PC098, 5678)\n"
    )


def test_render_config_any_and_warnings() -> None:
    text = aes("X /d R (1, 1500b) ANY") + "ApplicationTitle = OLD\n"
    out = render_config(parse_config(text, CFG))
    assert "    peers:        ANY\n" in out and "1500 bytes per study (1500b)" in out
    assert out.endswith(
        f"Warnings: 1\n  {CFG}:4:1: warning: 'ApplicationTitle' is obsolete and ignored"
        " (as in DCMTK)\n"
    )
