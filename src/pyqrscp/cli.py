"""The ``pyqrscp`` command: dcmqrscp's options, then config, then the server.

Precedence is applied in one place (:func:`resolve_options`): defaults < config file < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pyqrscp import __version__
from pyqrscp.config import Config, load_config, prepare_storage_areas
from pyqrscp.config.render import render_config
from pyqrscp.errors import ConfigError, StartupError, StorageFailure
from pyqrscp.logs import LEVELS, configure_logging
from pyqrscp.options import OPTION_TABLE, Options

LOGGER = logging.getLogger(__name__)

DEFAULT_CONFIG_PATHS = (
    Path("dcmqrscp.cfg"),
    Path("/etc/dcmtk/dcmqrscp.cfg"),
    Path("/usr/local/etc/dcmtk/dcmqrscp.cfg"),
)


def build_parser() -> argparse.ArgumentParser:
    """Build argparse from the option table, keeping dcmqrscp's ``-``/``+`` spellings."""
    parser = argparse.ArgumentParser(
        prog="pyqrscp", prefix_chars="-+", allow_abbrev=False,
        description="DICOM image archive (central test node), a drop-in for dcmqrscp. "
        "Also: 'pyqrscp index --help' to register files into a storage area.")
    parser.add_argument("--version", action="version", version=f"pyqrscp {__version__}")
    parser.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="fatal",
                        default=argparse.SUPPRESS, help="quiet mode, print no warnings and errors")
    parser.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="info",
                        default=argparse.SUPPRESS, help="verbose mode, print processing details")
    parser.add_argument("-d", "--debug", dest="log_level", action="store_const", const="debug",
                        default=argparse.SUPPRESS, help="debug mode, print debug information")
    parser.add_argument("port", nargs="?", type=int, default=None,
                        help="tcp/ip port number to listen on (default: in config file)")
    for spec in OPTION_TABLE:
        common: dict[str, Any] = {"dest": spec.dest, "default": argparse.SUPPRESS,
                                  "help": spec.help}
        if spec.value_type is None:
            parser.add_argument(*spec.flags, action="store_const", const=spec.const, **common)
        else:
            metavar = tuple(spec.metavar.split()) if spec.nargs and spec.metavar else spec.metavar
            parser.add_argument(*spec.flags, type=spec.value_type, metavar=metavar,
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


def find_config(explicit: Path | None) -> Path:
    """The config file dcmqrscp would read: the named one, else the working folder, else system."""
    if explicit is not None:
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIG_PATHS[0]


def resolve_options(flags: dict[str, Any], config: Config) -> Options:
    """Apply defaults < config file < flags with one generic merge."""
    from_config: dict[str, Any] = {
        "port": config.network_tcp_port,
        "max_pdu": config.max_pdu_size,
        "max_associations": config.max_associations,
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
        from pyqrscp.indexer import main as index_main

        return index_main(args[1:])
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
        prepare_storage_areas(config)
    except ConfigError as error:
        print(f"pyqrscp: {error}", file=sys.stderr)
        return 2
    options = resolve_options(flags, config)
    return _serve(options, config)


def _serve(options: Options, config: Config) -> int:
    from pyqrscp.server import ArchiveServer, validate_options

    try:
        validate_options(options)
        server = ArchiveServer(config, options)
        server.install_signal_handlers()
        server.start()
    except (StartupError, ConfigError, StorageFailure) as error:
        print(f"pyqrscp: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"pyqrscp: cannot listen on port {options.port}: {error}", file=sys.stderr)
        return 1
    return server.serve_until_signalled()
