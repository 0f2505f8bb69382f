"""``pyqrscp index``: register existing DICOM files into an AE title's storage area.

Two modes:

* ``pyqrscp index -c CFG AETITLE PATH...`` copies every file found (folders recursively) through
  :meth:`StorageArea.store_batch`, so file names are generated and quotas apply as for C-STORE.
  It works while the server runs: both share the area (each process's temp files carry its own
  id, and leftovers are settled only by a process that finds the area unused);
* ``pyqrscp index -c CFG AETITLE --rebuild`` recreates the index rows from the area's own files
  in one transaction, keeping every file where it is.  It needs the area alone and refuses
  while a server (or any other pyqrscp process) uses it.

Started as root with UserName/GroupName in the config, it switches to them first, as the server
does: the area's files stay the served user's, and the files to add must be readable by it.

A file that cannot go in is reported and skipped, never fatal.  Exit codes: 0 everything went in,
1 some files were skipped, 2 usage or config errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from pyqrscp.archive.index.choice import index_database_url, open_backend
from pyqrscp.archive.rebuild import add_files, rebuild
from pyqrscp.cli.importreport import Report
from pyqrscp.config import load_config
from pyqrscp.config.location import find_config
from pyqrscp.errors import ConfigError, PyqrscpError
from pyqrscp.loglines import DcmtkFormatter, warning_to_log
from pyqrscp.server.privileges import drop_privileges


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyqrscp index", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Register existing DICOM files into the storage area of an AE title "
        "(copied in under generated names,\nquotas applied), or rebuild that area's index from "
        "its own files. Adding files works while the\nserver runs; --rebuild refuses an area "
        "that a running pyqrscp uses.",
        epilog="examples:\n"
        "  pyqrscp index -c dcmqrscp.cfg ACME_STORE /path/to/files-or-folders\n"
        "  pyqrscp index -c dcmqrscp.cfg ACME_STORE --rebuild\n\n"
        "exit codes: 0 every file went in, 1 some files were skipped (each named, non-DICOM\n"
        "files summed up in one line), 2 usage or config error")
    parser.add_argument("-c", "--config", type=Path, default=None,
                        help="config file (default: as pyqrscp, e.g. ./dcmqrscp.cfg)")
    parser.add_argument("--rebuild", action="store_true",
                        help="recreate the index from the files in the area (files are kept)")
    parser.add_argument("--follow-links", action="store_true",
                        help="follow symbolic links found in folders (never into a storage "
                        "area); by default they are skipped")
    parser.add_argument("--index-db", metavar="URL", default=None,
                        help="index database (default: the config's IndexDatabase, else "
                        "$PYQRSCP_INDEX_DB, else SQLite in the area)")
    parser.add_argument("ae_title", metavar="AETITLE", help="AETable entry whose area to fill")
    parser.add_argument("paths", metavar="PATH", nargs="*", type=Path,
                        help="DICOM files or folders (searched recursively)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``pyqrscp index``; return 0 (all in), 1 (some skipped) or 2 (usage/config)."""
    parser = build_parser()
    try:
        args = parser.parse_intermixed_args(list(argv))
        if args.rebuild == bool(args.paths):
            parser.error("give either PATH... or --rebuild")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        config = load_config(find_config(args.config))
    except ConfigError as error:
        print(f"pyqrscp index: {error}", file=sys.stderr)
        return 2
    entry = config.ae(args.ae_title)
    if entry is None:
        known = ", ".join(e.ae_title for e in config.ae_table) or "none"
        print(f"pyqrscp index: AE title {args.ae_title!r} is not in the AETable of "
              f"{config.path} (known: {known})", file=sys.stderr)
        return 2
    report = Report(sys.stderr, show_progress=sys.stderr.isatty())
    with _warnings_to(sys.stderr):
        try:  # the database driver is loaded before the switch to UserName
            backend = open_backend(index_database_url(args.index_db, config, os.environ))
            if _is_root() and drop_privileges(config.user_name, config.group_name):
                print(f"pyqrscp index: running as user {config.user_name or 'root'} "
                      "(UserName/GroupName of the config file)", file=sys.stderr)
        except (OSError, PyqrscpError) as error:
            print(f"pyqrscp index: cannot use storage area {entry.storage_area}: {error}",
                  file=sys.stderr)
            return 2
        failures: tuple[type[BaseException], ...] = (OSError, PyqrscpError,
                                                     *backend.driver_errors)
        try:
            if args.rebuild:
                rebuild(entry, report, backend)
                return report.finish(f"{entry.ae_title} ({entry.storage_area}) rebuilt")
            add_files(entry, args.paths, report, areas=[e.storage_area for e in config.ae_table],
                      follow_links=args.follow_links, backend=backend)
            return report.finish(f"{entry.ae_title} ({entry.storage_area})")
        except failures as error:
            print(f"pyqrscp index: cannot use storage area {entry.storage_area}: {error}",
                  file=sys.stderr)
            return 2
        finally:
            backend.close()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextmanager
def _warnings_to(stream: TextIO) -> Iterator[None]:
    """Show pyqrscp's warnings (quota evictions) for this run only; no global set-up."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(DcmtkFormatter())
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("pyqrscp")
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.showwarning = warning_to_log  # pydicom's, as W: lines naming the file
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous_level)
        handler.flush()
