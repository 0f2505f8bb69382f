"""Command-line options of dcmqrscp, as one declarative table.

The table keeps every dcmqrscp spelling in one place, says which ones pyqrscp implements, and
lets ``cli`` build argparse from it with one loop.  An option that is not implemented yet is
accepted and named in a warning, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyqrscp.config.model import DEFAULT_MAX_PDU_SIZE

DEFAULT_RESPONSE_TIMEOUT = 60
"""Seconds pyqrscp waits for a DIMSE response or message when ``-td`` is not given."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One dcmqrscp option: its spellings, where its value goes, and whether it works."""

    flags: tuple[str, ...]
    dest: str
    const: Any = True
    value_type: type | None = None
    nargs: int | None = None
    metavar: str | None = None
    help: str = ""
    implemented: bool = True
    repeat: bool = False


def _flag(flags: tuple[str, ...], dest: str, help: str, const: Any = True,
          implemented: bool = True) -> OptionSpec:
    return OptionSpec(flags, dest, const=const, help=help, implemented=implemented)


def _value(flags: tuple[str, ...], dest: str, value_type: type, metavar: str, help: str,
           nargs: int | None = None, implemented: bool = True,
           repeat: bool = False) -> OptionSpec:
    return OptionSpec(flags, dest, value_type=value_type, metavar=metavar, help=help,
                      nargs=nargs, implemented=implemented, repeat=repeat)


_PREFER = (
    ("+x=", "--prefer-uncompr", "uncompr"), ("+xe", "--prefer-little", "little"),
    ("+xb", "--prefer-big", "big"), ("+xs", "--prefer-lossless", "lossless"),
    ("+xy", "--prefer-jpeg8", "jpeg8"), ("+xx", "--prefer-jpeg12", "jpeg12"),
    ("+xv", "--prefer-j2k-lossless", "j2k-lossless"), ("+xw", "--prefer-j2k-lossy", "j2k-lossy"),
    ("+xt", "--prefer-jls-lossless", "jls-lossless"), ("+xu", "--prefer-jls-lossy", "jls-lossy"),
    ("+xm", "--prefer-mpeg2", "mpeg2"), ("+xh", "--prefer-mpeg2-high", "mpeg2-high"),
    ("+xn", "--prefer-mpeg4", "mpeg4"), ("+xl", "--prefer-mpeg4-bd", "mpeg4-bd"),
    ("+x2", "--prefer-mpeg4-2-2d", "mpeg4-2-2d"), ("+x3", "--prefer-mpeg4-2-3d", "mpeg4-2-3d"),
    ("+xo", "--prefer-mpeg4-2-st", "mpeg4-2-st"), ("+x4", "--prefer-hevc", "hevc"),
    ("+x5", "--prefer-hevc10", "hevc10"), ("+xr", "--prefer-rle", "rle"),
    ("+xd", "--prefer-deflated", "deflated"), ("+xi", "--implicit", "implicit"),
)
_PROPOSE = (
    ("-x=", "--propose-uncompr", "uncompr"), ("-xe", "--propose-little", "little"),
    ("-xb", "--propose-big", "big"), ("-xi", "--propose-implicit", "implicit"),
    ("-xs", "--propose-lossless", "lossless"), ("-xy", "--propose-jpeg8", "jpeg8"),
    ("-xx", "--propose-jpeg12", "jpeg12"), ("-xv", "--propose-j2k-lossless", "j2k-lossless"),
    ("-xw", "--propose-j2k-lossy", "j2k-lossy"), ("-xt", "--propose-jls-lossless", "jls-lossless"),
    ("-xu", "--propose-jls-lossy", "jls-lossy"), ("-xm", "--propose-mpeg2", "mpeg2"),
    ("-xh", "--propose-mpeg2-high", "mpeg2-high"), ("-xn", "--propose-mpeg4", "mpeg4"),
    ("-xl", "--propose-mpeg4-bd", "mpeg4-bd"), ("-x2", "--propose-mpeg4-2-2d", "mpeg4-2-2d"),
    ("-x3", "--propose-mpeg4-2-3d", "mpeg4-2-3d"), ("-xo", "--propose-mpeg4-2-st", "mpeg4-2-st"),
    ("-x4", "--propose-hevc", "hevc"), ("-x5", "--propose-hevc10", "hevc10"),
    ("-xr", "--propose-rle", "rle"), ("-xd", "--propose-deflated", "deflated"),
)
_WRITE_XFER = (
    ("+t=", "--write-xfer-same", "same"), ("+te", "--write-xfer-little", "little"),
    ("+tb", "--write-xfer-big", "big"), ("+ti", "--write-xfer-implicit", "implicit"),
    ("+td", "--write-xfer-deflated", "deflated"),
)


def _choice_specs(rows: tuple[tuple[str, str, str], ...], dest: str, what: str,
                  implemented: tuple[str, ...]) -> list[OptionSpec]:
    return [_flag((short, long), dest, f"{what}: {name}", const=name,
                  implemented=name in implemented) for short, long, name in rows]


_TLS_PROFILE = (
    ("+py", "--profile-bcp195-nd", "bcp195-nd"), ("+px", "--profile-bcp195", "bcp195"),
    ("+pz", "--profile-bcp195-ex", "bcp195-ex"), ("+pa", "--profile-aes", "aes"),
    ("+pn", "--profile-null", "null"),
)
_TLS_OPTIONS: tuple[OptionSpec, ...] = (
    _flag(("-tls", "--disable-tls"), "tls_key_cert", "use normal TCP/IP connection (default)",
          const=None),
    _value(("+tls", "--enable-tls"), "tls_key_cert", Path, "KEY CERT",
           "use TLS with this private key and certificate file", nargs=2),
    _flag(("+ps", "--std-passwd"), "tls_password",
          "prompt for the private key password (default)", const=None),
    _value(("+pw", "--use-passwd"), "tls_password", str, "PASSWORD",
           "use this private key password"),
    _flag(("-pw", "--null-passwd"), "tls_password", "use an empty private key password",
          const=""),
    _flag(("-pem", "--pem-keys"), "tls_key_format", "keys and certificates are PEM (default)",
          const="pem"),
    _flag(("-der", "--der-keys"), "tls_key_format", "keys and certificates are DER",
          const="der", implemented=False),
    _value(("+cf", "--add-cert-file"), "tls_trusted_files", Path, "FILE",
           "trust the certificate(s) in this PEM file", repeat=True),
    _value(("+cd", "--add-cert-dir"), "tls_trusted_dirs", Path, "DIR",
           "trust the certificates in this folder (hashed names, c_rehash)", repeat=True),
    _value(("+crl", "--add-crl-file"), "tls_crl_files", Path, "FILE",
           "add a certificate revocation list (implies +crv)", repeat=True),
    _flag(("+crv", "--enable-crl-vfy"), "tls_crl_check", "check the peer's certificate "
          "against the CRLs", const="leaf"),
    _flag(("+cra", "--enable-crl-all"), "tls_crl_check", "check the whole chain against the "
          "CRLs", const="chain"),
    *_choice_specs(_TLS_PROFILE, "tls_profile", "TLS security profile",
                   ("bcp195-nd", "bcp195", "bcp195-ex", "aes")),
    _value(("+cs", "--cipher"), "tls_ciphers", str, "CIPHERSUITE",
           "add a TLS 1.2 ciphersuite (TLS or OpenSSL name)", repeat=True),
    _value(("+dp", "--dhparam"), "tls_dh_params", Path, "FILE",
           "read DH parameters for DHE ciphersuites"),
    _value(("+rs", "--seed"), "tls_seed", Path, "FILE", "seed the random generator",
           implemented=False),
    _flag(("+ws", "--write-seed"), "tls_write_seed", "write back the seed",
          implemented=False),
    _value(("+wf", "--write-seed-file"), "tls_write_seed_file", Path, "FILE",
           "write the seed to this file", implemented=False),
    _flag(("-rc", "--require-peer-cert"), "tls_peer_cert",
          "verify the peer certificate, fail if absent (default)", const="require"),
    _flag(("-vc", "--verify-peer-cert"), "tls_peer_cert",
          "verify the peer certificate if present", const="verify"),
    _flag(("-ic", "--ignore-peer-cert"), "tls_peer_cert", "do not verify the peer certificate",
          const="ignore"),
)

OPTION_TABLE: tuple[OptionSpec, ...] = (
    _value(("-ll", "--log-level"), "log_level", str, "LEVEL",
           "fatal, error, warn, info, debug or trace"),
    _value(("-lc", "--log-config"), "log_config", Path, "FILE",
           "use config file FILE for the logger (DCMTK's logger.cfg format)"),
    _value(("--log-file",), "log_file", Path, "FILE",
           "log to FILE instead of stderr, rotated at 10 MiB, 5 kept (pyqrscp only)"),
    _value(("-c", "--config"), "config", Path, "FILE", "use specific configuration file "
           "(default: ./dcmqrscp.cfg, else /etc/dcmtk/dcmqrscp.cfg, else "
           "/usr/local/etc/dcmtk/dcmqrscp.cfg)"),
    _flag(("-s", "--single-process"), "single_process", "single process mode (always)"),
    _flag(("--fork",), "single_process", "accepted; pyqrscp uses threads", const=False),
    _flag(("--require-find",), "require_find", "reject MOVE/GET without a FIND context"),
    _flag(("--no-parallel-store",), "no_parallel_store",
          "reject simultaneous STORE associations for one AE title"),
    _flag(("--disable-get",), "disable_get", "disable C-GET support"),
    _flag(("--allow-shutdown",), "allow_shutdown", "allow external shutdown (private SOP class)",
          implemented=False),
    _flag(("-XF", "--check-find"), "check_find", "check C-FIND identifier validity"),
    _flag(("--no-check-find",), "check_find", "do not check C-FIND identifiers", const=False),
    _flag(("-XM", "--check-move"), "check_move", "check C-MOVE identifier validity"),
    _flag(("--no-check-move",), "check_move", "do not check C-MOVE identifiers", const=False),
    _flag(("--move-unrestricted",), "move_restriction", "do not restrict move destination",
          const="unrestricted"),
    _flag(("-ZA", "--move-aetitle"), "move_restriction", "move dest. must be requesting AE",
          const="aetitle"),
    _flag(("-ZH", "--move-host"), "move_restriction", "move dest. must be requesting host",
          const="host"),
    _flag(("-ZV", "--move-vendor"), "move_restriction", "move dest. must be requesting vendor",
          const="vendor"),
    _flag(("-QP", "--no-patient-root"), "no_patient_root", "no Patient Root Q/R models"),
    _flag(("-QS", "--no-study-root"), "no_study_root", "no Study Root Q/R models"),
    _flag(("-QO", "--no-patient-study"), "no_patient_study", "no Patient/Study Only Q/R models"),
    _value(("-xf", "--assoc-config-file"), "assoc_config_file", str, "F I O",
           "association negotiation profiles", nargs=3, implemented=False),
    *_choice_specs(_PREFER, "prefer_transfer_syntax", "prefer",
                   ("uncompr", "little", "big", "implicit", "deflated", "lossless", "jpeg8",
                    "jpeg12", "j2k-lossless", "j2k-lossy", "jls-lossless", "jls-lossy", "rle")),
    *_choice_specs(_PROPOSE, "propose_transfer_syntax", "propose",
                   ("uncompr", "little", "big", "implicit")),
    _flag(("-ac", "--access-full"), "access_control", "accept any host", const=False),
    _flag(("+ac", "--access-control"), "access_control", "tcp wrapper rules",
          implemented=False),
    _value(("--bind",), "bind", str, "ADDRESS",
           "listen on this address only, e.g. 127.0.0.1 (default: every interface; "
           "pyqrscp only)"),
    _value(("--http",), "http", str, "[HOST:]PORT",
           "serve DICOMweb and the page on this address (host default 127.0.0.1; pyqrscp "
           "only, see docs/dicomweb.md)"),
    _value(("-to", "--timeout"), "network_timeout", int, "SECONDS", "connection timeout"),
    _value(("-ta", "--acse-timeout"), "acse_timeout", int, "SECONDS", "ACSE timeout"),
    _value(("-td", "--dimse-timeout"), "dimse_timeout", int, "SECONDS", "DIMSE timeout"),
    _value(("-pdu", "--max-pdu"), "max_pdu", int, "BYTES", "max receive PDU (4096..131072)"),
    _flag(("-dhl", "--disable-host-lookup"), "disable_host_lookup", "no hostname lookup"),
    _flag(("--refuse",), "refuse", "refuse every association"),
    _flag(("--reject",), "reject", "reject associations without implementation class UID"),
    _flag(("--ignore",), "ignore", "receive store data but do not store"),
    _flag(("-up", "--uid-padding"), "uid_padding", "silently correct space-padded UIDs"),
    _flag(("+Cr", "--use-request-charset"), "use_request_charset", "answer in request charset"),
    _flag(("-Cr", "--override-charset"), "use_request_charset", "answer in --convert-to charset",
          const=False),
    _flag(("+A7", "--convert-to-ascii"), "convert_to_charset", "answer in ASCII",
          const="ISO_IR 6"),
    _flag(("+U8", "--convert-to-utf8"), "convert_to_charset", "answer in UTF-8",
          const="ISO_IR 192"),
    _flag(("+L1", "--convert-to-latin1"), "convert_to_charset", "answer in Latin-1",
          const="ISO_IR 100"),
    _value(("+C", "--convert-to-charset"), "convert_to_charset", str, "CHARSET",
           "answer in the given DICOM charset"),
    _flag(("-Ct", "--transliterate"), "transliterate", "approximate unrepresentable chars"),
    _flag(("-Cd", "--discard-illegal"), "discard_illegal", "discard unrepresentable chars"),
    _flag(("-B", "--normal"), "bit_preserving", "allow implicit conversions", const=False),
    _flag(("+B", "--bit-preserving"), "bit_preserving", "write data as read (always)"),
    _flag(("+F", "--write-file"), "write_dataset", "write file format (default)", const=False),
    _flag(("-F", "--write-dataset"), "write_dataset", "write without meta header",
          implemented=False),
    *_choice_specs(_WRITE_XFER, "write_transfer_syntax", "write", ("same",)),
    _flag(("+u", "--enable-new-vr"), "new_vr", "enable new VRs (default)"),
    _flag(("-u", "--disable-new-vr"), "new_vr", "disable new VRs", const=False,
          implemented=False),
    _flag(("+g=", "--group-length-recalc"), "group_length", "recalc group lengths",
          const="recalc"),
    _flag(("+g", "--group-length-create"), "group_length", "create group lengths",
          const="create", implemented=False),
    _flag(("-g", "--group-length-remove"), "group_length", "remove group lengths",
          const="remove", implemented=False),
    _flag(("+e", "--length-explicit"), "length_encoding", "explicit lengths", const="explicit"),
    _flag(("-e", "--length-undefined"), "length_encoding", "undefined lengths",
          const="undefined", implemented=False),
    _flag(("-p", "--padding-off"), "padding", "no padding (default)", const=None),
    _value(("+p", "--padding-create"), "padding", int, "F I", "padding", nargs=2,
           implemented=False),
    _value(("+cl", "--compression-level"), "compression_level", int, "LEVEL",
           "deflate level", implemented=False),
    *_TLS_OPTIONS,
    _flag(("--no-sync",), "no_sync", "do not fsync before acknowledging a store (faster)"),
    _value(("--max-store-size",), "max_store_size", int, "BYTES",
           "largest C-STORE dataset accepted (default 4 GiB; the per-study quota also caps)"),
    _value(("--max-request-size",), "max_request_size", int, "BYTES",
           "largest C-FIND/C-MOVE/C-GET identifier or N-ACTION information (default 32 MiB)"),
    _value(("--unassociated-timeout",), "unassociated_timeout", int, "SECONDS",
           "close a connection that sent no A-ASSOCIATE-RQ after"),
    _value(("--max-unassociated",), "max_unassociated", int, "N",
           "connections waiting for their A-ASSOCIATE-RQ, at most"),
    _value(("--max-unassociated-per-host",), "max_unassociated_per_host", int, "N",
           "of those, from one host"),
    _flag(("--case-sensitive-pn",), "case_sensitive_pn", "PN matching case-sensitive"),
    _value(("--index-db",), "index_db", str, "URL",
           "index database: sqlite (a file in each storage area, default) or "
           "postgresql://user@host:port/database, shared by several nodes (default: the "
           "config's IndexDatabase, else $PYQRSCP_INDEX_DB)"),
    _flag(("--check-config",), "check_config", "print the resolved config and exit"),
    _flag(("--print-example-config",), "print_example_config",
          "print an example dcmqrscp.cfg (the walkthrough's) and exit"),
)


@dataclass(frozen=True, slots=True)
class Options:
    """Every setting the server runs with, after defaults < config file < flags."""

    log_level: str = "warn"
    log_config: Path | None = None
    log_file: Path | None = None
    config: Path | None = None
    port: int | None = None
    bind: str | None = None
    http: str | None = None
    single_process: bool = True
    require_find: bool = False
    no_parallel_store: bool = False
    disable_get: bool = False
    allow_shutdown: bool = False
    check_find: bool = False
    check_move: bool = False
    move_restriction: str = "unrestricted"
    no_patient_root: bool = False
    no_study_root: bool = False
    no_patient_study: bool = False
    assoc_config_file: tuple[str, ...] | None = None
    prefer_transfer_syntax: str = "uncompr"
    propose_transfer_syntax: str = "uncompr"
    access_control: bool = False
    network_timeout: int | None = None
    acse_timeout: int = 30
    dimse_timeout: int | None = None
    max_pdu: int | None = None
    disable_host_lookup: bool = False
    refuse: bool = False
    reject: bool = False
    ignore: bool = False
    uid_padding: bool = False
    use_request_charset: bool = True
    convert_to_charset: str | None = None
    transliterate: bool = False
    discard_illegal: bool = False
    bit_preserving: bool = True
    write_dataset: bool = False
    write_transfer_syntax: str = "same"
    new_vr: bool = True
    group_length: str = "recalc"
    length_encoding: str = "explicit"
    padding: Any = None
    compression_level: int | None = None
    no_sync: bool = False
    max_store_size: int = 4 << 30
    max_request_size: int = 32 << 20
    unassociated_timeout: int = 10
    max_unassociated: int = 64
    max_unassociated_per_host: int = 16
    case_sensitive_pn: bool = False
    index_db: str | None = None
    check_config: bool = False
    print_example_config: bool = False
    max_associations: int = 16
    tls_key_cert: tuple[Path, ...] | None = None
    tls_password: str | None = None
    tls_key_format: str = "pem"
    tls_trusted_files: tuple[Path, ...] = ()
    tls_trusted_dirs: tuple[Path, ...] = ()
    tls_crl_files: tuple[Path, ...] = ()
    tls_crl_check: str | None = None
    tls_profile: str = "bcp195-nd"
    tls_ciphers: tuple[str, ...] = ()
    tls_dh_params: Path | None = None
    tls_seed: Path | None = None
    tls_write_seed: bool = False
    tls_write_seed_file: Path | None = None
    tls_peer_cert: str = "require"
    not_implemented: tuple[str, ...] = field(default=())

    @property
    def receive_pdu_size(self) -> int:
        """The largest PDU pyqrscp receives and proposes: ``-pdu``, else 16384 as dcmqrscp."""
        return self.max_pdu or DEFAULT_MAX_PDU_SIZE

    @property
    def response_timeout(self) -> int:
        """How long pyqrscp's own services wait for a peer's DIMSE message: ``-td``, else
        60 s (pynetdicom's association timer keeps ``-td`` as given: no limit without it)."""
        return self.dimse_timeout or DEFAULT_RESPONSE_TIMEOUT
