"""The ``pyqrscp`` command: dcmqrscp's options, then config, then the server.

Precedence is applied in one place (:func:`resolve_options`): defaults < config file < flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from pyqrscp import __version__
from pyqrscp.archive.index.choice import index_database_url
from pyqrscp.cli.chores import ls_main, rm_main
from pyqrscp.cli.index import main as index_main
from pyqrscp.cli.logs import LEVELS, configure_logging
from pyqrscp.config import Config, load_config
from pyqrscp.config.location import DEFAULT_CONFIG_PATHS, find_config
from pyqrscp.config.options import OPTION_TABLE, Options, OptionSpec
from pyqrscp.config.render import render_config
from pyqrscp.errors import ConfigError, ListenError, StartupError, StorageFailure
from pyqrscp.link.library import serving_settings
from pyqrscp.server.server import ArchiveServer, validate_options

LOGGER = logging.getLogger(__name__)


_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("general options", ("log_level", "log_config", "log_file", "config", "check_config",
                         "print_example_config")),
    ("multi-process options", ("single_process",)),
    ("database options: association negotiation",
     ("require_find", "no_parallel_store", "disable_get", "allow_shutdown")),
    ("database options: checking identifier validity", ("check_find", "check_move")),
    ("database options: restriction of move targets", ("move_restriction",)),
    ("database options: restriction of query/retrieve models",
     ("no_patient_root", "no_study_root", "no_patient_study")),
    ("database options: matching and index (pyqrscp only)", ("case_sensitive_pn", "index_db")),
    ("network options: association negotiation profiles from configuration file",
     ("assoc_config_file",)),
    ("network options: preferred network transfer syntaxes (incoming associations)",
     ("prefer_transfer_syntax",)),
    ("network options: proposed transmission transfer syntaxes (outgoing associations)",
     ("propose_transfer_syntax",)),
    ("network options: network host access control (tcp wrapper)", ("access_control",)),
    ("network options: other network options",
     ("bind", "network_timeout", "acse_timeout", "dimse_timeout", "max_pdu",
      "disable_host_lookup", "refuse", "reject", "ignore", "uid_padding")),
    ("network options: limits per peer (pyqrscp only; see docs/reliability.md)",
     ("max_store_size", "max_request_size", "unassociated_timeout", "max_unassociated",
      "max_unassociated_per_host")),
    ("HTTP: DICOMweb and the page (pyqrscp only)", ("http",)),
    ("transport layer security (TLS) options (as storescp's)", ("tls_",)),
    ("processing options: specific character set",
     ("use_request_charset", "convert_to_charset", "transliterate", "discard_illegal")),
    ("output options", ("bit_preserving", "write_dataset", "write_transfer_syntax", "new_vr",
                        "group_length", "length_encoding", "padding", "compression_level",
                        "no_sync")),
)

_EPILOG = """\
options marked [warns] are accepted with a warning line and have no effect.

examples:
  pyqrscp -c dcmqrscp.cfg                    serve on the config's NetworkTCPPort
  pyqrscp -v -c dcmqrscp.cfg --bind 127.0.0.1 11112
  pyqrscp --check-config -c dcmqrscp.cfg     print the resolved tables, or the errors
  pyqrscp --print-example-config > dcmqrscp.cfg
  pyqrscp -lc /etc/dcmtk/filelog.cfg -c dcmqrscp.cfg
  pyqrscp index -c dcmqrscp.cfg ACME_STORE /path/to/files   (see pyqrscp index --help)

exit codes: 0 stopped by SIGINT/SIGTERM (or --help, --check-config), 1 runtime failure
(cannot listen), 2 usage, config, log config or start-up error (message on stderr)."""


def _group_of(dest: str) -> str:
    """The man-page group of an option; one not placed yet goes with the general options."""
    return next((title for title, dests in _GROUPS
                 if dest in dests or any(d.endswith("_") and dest.startswith(d) for d in dests)),
                "general options")


def _help(spec: OptionSpec) -> str:
    """The option's help, with ``(default)`` or its default value, and ``[warns]``."""
    text = spec.help
    default = getattr(Options(), spec.dest, None)
    if spec.value_type is None and spec.const == default and "default" not in text:
        text += " (default)"
    elif spec.value_type is not None and default not in (None, (), "") \
            and "default" not in text:
        text += f" (default: {default})"
    return text if spec.implemented else f"{text} [warns]"


def build_parser() -> argparse.ArgumentParser:
    """Build argparse from the option table, keeping dcmqrscp's ``-``/``+`` spellings and
    the man page's grouping."""
    parser = argparse.ArgumentParser(
        prog="pyqrscp", prefix_chars="-+", allow_abbrev=False,
        usage="pyqrscp [options] [port]\n       pyqrscp index|ls|rm --help",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="DICOM image archive (central test node), a drop-in for dcmqrscp.\n"
        "Also: 'pyqrscp index --help' to register files into a storage area.")
    parser.add_argument("port", nargs="?", type=int, default=None,
                        help="tcp/ip port number to listen on (default: NetworkTCPPort of the "
                        "config file)")
    groups = {title: parser.add_argument_group(title) for title, _ in _GROUPS}
    general = groups["general options"]
    general.add_argument("--version", action="version", version=f"pyqrscp {__version__}")
    general.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="fatal",
                         default=argparse.SUPPRESS, help="quiet mode, print no warnings and errors")
    general.add_argument("-v", "--verbose", dest="log_level", action="store_const",
                         const="info", default=argparse.SUPPRESS,
                         help="verbose mode, print processing details")
    general.add_argument("-d", "--debug", dest="log_level", action="store_const", const="debug",
                         default=argparse.SUPPRESS, help="debug mode, print debug information")
    for spec in OPTION_TABLE:
        group = groups[_group_of(spec.dest)]
        common: dict[str, Any] = {"dest": spec.dest, "default": argparse.SUPPRESS,
                                  "help": _help(spec)}
        if spec.value_type is None:
            group.add_argument(*spec.flags, action="store_const", const=spec.const, **common)
        else:
            metavar = tuple(spec.metavar.split()) if spec.nargs and spec.metavar else spec.metavar
            group.add_argument(*spec.flags, type=spec.value_type, metavar=metavar,
                               nargs=spec.nargs, action="append" if spec.repeat else "store",
                               **common)
    return parser


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """Return only the settings the user gave, plus the spellings of unimplemented options."""
    parser = build_parser()
    given = vars(parser.parse_args(list(argv)))
    if given.get("port") is None:
        given.pop("port", None)
    if given.get("log_level", "warn") not in LEVELS:
        parser.error(f"invalid log level {given['log_level']!r} (expected one of "
                     f"{', '.join(LEVELS)})")
    unimplemented = [spec.flags[0] for spec in OPTION_TABLE
                     if not spec.implemented and spec.flags[0] in argv]
    unimplemented += [flag for spec in OPTION_TABLE if not spec.implemented
                      for flag in spec.flags[1:] if flag in argv]
    given["not_implemented"] = tuple(unimplemented)
    return {dest: tuple(value) if isinstance(value, list) else value
            for dest, value in given.items()}


def example_config() -> str:
    """The example dcmqrscp.cfg shipped in the wheel (the README walkthrough's)."""
    return (resources.files("pyqrscp") / "example.cfg").read_text(encoding="utf-8")



def resolve_options(flags: dict[str, Any], config: Config) -> Options:
    """Apply defaults < config file < flags with one generic merge."""
    from_config: dict[str, Any] = {
        "port": config.network_tcp_port,
        "max_pdu": config.max_pdu_size,
        "max_associations": config.max_associations,
        "http": config.http.address,
        "index_db": index_database_url(None, config, os.environ),
    }
    charset = config.specific_character_set
    if charset.character_set is not None:
        from_config["convert_to_charset"] = charset.character_set
    if charset.override:
        from_config["use_request_charset"] = False
    if charset.discard:
        from_config["discard_illegal"] = True
    if charset.transliterate:
        from_config["transliterate"] = True
    merged = {key: value for key, value in from_config.items() if value is not None}
    merged.update(flags)
    return dataclasses.replace(Options(), **merged)


def main(argv: Sequence[str] | None = None) -> int:
    """Run pyqrscp; return the process exit code (0 ok, 1 runtime failure, 2 usage/config)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "index":
        return index_main(args[1:])
    if args and args[0] in ("ls", "rm"):
        return (ls_main if args[0] == "ls" else rm_main)(args[1:])
    try:
        flags = parse_flags(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if flags.get("print_example_config"):
        print(example_config(), end="")
        return 0
    try:
        configure_logging(flags.get("log_level", "warn"), flags.get("log_config"),
                          flags.get("log_file"))
    except ConfigError as error:
        print(f"pyqrscp: {error}", file=sys.stderr)
        return 2
    for flag in flags["not_implemented"]:
        LOGGER.warning("option %s is not implemented yet and is ignored", flag)
    config_path = find_config(flags.get("config"))
    try:
        if flags.get("config") is None and not config_path.exists():
            print(f"pyqrscp: no config file: none of "
                  f"{', '.join(map(str, DEFAULT_CONFIG_PATHS))} exists (name one with -c FILE)",
                  file=sys.stderr)
            return 2
        config = load_config(config_path)
        for warning in config.warnings:
            LOGGER.warning("%s", warning)
        if not config.ae_table:
            LOGGER.warning("%s: the AETable is empty: every association will be rejected",
                           config.path)
        if flags.get("check_config"):
            print(render_config(config))
            return 0
    except ConfigError as error:
        print(f"pyqrscp: {error}", file=sys.stderr)
        return 2
    options = resolve_options(flags, config)
    return _serve(options, config)


def _serve(options: Options, config: Config) -> int:
    with serving_settings(describe=logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)):
        return _start_and_serve(options, config)


def _start_and_serve(options: Options, config: Config) -> int:
    with contextlib.ExitStack() as signals:
        try:
            validate_options(options)
            server = ArchiveServer(config, options, host=options.bind or "")
            signals.enter_context(server.stop_signals())
            server.start()
        except ListenError as error:
            print(f"pyqrscp: {error}", file=sys.stderr)
            return 1
        except (StartupError, ConfigError, StorageFailure) as error:
            print(f"pyqrscp: {error}", file=sys.stderr)
            return 2
        except (OSError, sqlite3.Error) as error:
            print(f"pyqrscp: cannot open the storage areas: {error}", file=sys.stderr)
            return 2
        return server.serve_until_signalled()
