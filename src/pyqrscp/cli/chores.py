"""``pyqrscp ls`` and ``pyqrscp rm``: what a storage area holds, and deleting from it.

Both work while the server runs: ``ls`` reads the index as any WAL reader does, ``rm`` goes
through :meth:`StorageArea.delete` (rows first, in one transaction; then the files).
Exit codes: 0 done, 1 nothing matched, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyqrscp.archive.index.backend import IndexBackend, SqliteBackend
from pyqrscp.archive.index.choice import index_database_url, open_backend
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.layout import is_safe_relative_name
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import AEEntry, Config, load_config
from pyqrscp.config.location import find_config
from pyqrscp.errors import ConfigError, PyqrscpError
from pyqrscp.loglines import DcmtkFormatter

LOGGER = logging.getLogger(__name__)

_TREE_SQL = """
SELECT patient.patient_id, patient.attrs, study.study_instance_uid, study.study_date,
       study.attrs, series.series_instance_uid, series.modality,
       COUNT(instance.pk), SUM(instance.file_size),
       (SELECT newest.file_name FROM instance newest WHERE newest.series_pk = series.pk
        ORDER BY newest.received DESC LIMIT 1)
FROM instance JOIN series ON series.pk=instance.series_pk
JOIN study ON study.pk=series.study_pk JOIN patient ON patient.pk=study.patient_pk
{where}
GROUP BY patient.pk, study.pk, series.pk
ORDER BY patient.patient_id, study.study_date, study.study_instance_uid, series.series_instance_uid
"""


def _config(path: Path | None) -> Config:
    return load_config(find_config(path))


def _entry(config: Config, ae_title: str) -> AEEntry:
    entry = config.ae(ae_title)
    if entry is None:
        known = ", ".join(e.ae_title for e in config.ae_table) or "none"
        raise ConfigError(config.path, 0, 0, f"AE title {ae_title!r} is not in the AETable "
                          f"(known: {known})")
    return entry


def area_tree(entry: AEEntry, patient: str | None = None, study: str | None = None,
              series: str | None = None, backend: IndexBackend | None = None
              ) -> dict[str, Any]:
    """The area's patients → studies → series with instance counts, bytes and dates."""
    backend = backend or SqliteBackend()
    tree: dict[str, Any] = {"ae_title": entry.ae_title, "storage_area": str(entry.storage_area),
                            "patients": []}
    if not backend.has_index(entry.storage_area):
        index = entry.storage_area / INDEX_FILE_NAME
        if not backend.shared and (index.is_symlink() or index.exists()):
            print(f"pyqrscp ls: {index} is not a regular file (a link?): not read",
                  file=sys.stderr)  # never follow a link someone planted
        return _totals(tree)
    filters = [(column, value) for column, value in (
        ("patient.patient_id", patient), ("study.study_instance_uid", study),
        ("series.series_instance_uid", series)) if value is not None]
    where = "WHERE " + " AND ".join(f"{column}=?" for column, _ in filters) if filters else ""
    db = backend.connect(entry.storage_area, read_only=True)
    try:
        rows = db.execute(_TREE_SQL.format(where=where),
                          [value for _, value in filters]).fetchall()
    finally:
        db.close()
    patients: dict[str, dict[str, Any]] = {}
    studies: dict[str, dict[str, Any]] = {}
    for (patient_id, patient_attrs, study_uid, study_date, study_attrs, series_uid, modality,
         count, size, newest_file) in rows:
        if patient_id not in patients:
            patients[patient_id] = {"patient_id": patient_id, "patient_name": json.loads(
                patient_attrs).get("PatientName", ""), "studies": []}
            tree["patients"].append(patients[patient_id])
        if study_uid not in studies:
            studies[study_uid] = {"study_instance_uid": study_uid, "study_date": study_date,
                                  "study_description": json.loads(study_attrs).get(
                                      "StudyDescription", ""), "series": []}
            patients[patient_id]["studies"].append(studies[study_uid])
        studies[study_uid]["series"].append({
            "series_instance_uid": series_uid, "modality": modality, "instances": int(count),
            "bytes": int(size or 0),
            "last_stored": _modified_text(entry.storage_area, newest_file)})
    return _totals(tree)


def _totals(node: dict[str, Any]) -> dict[str, Any]:
    """Add ``instances``, ``bytes`` and ``last_stored`` sums to every level."""
    for key in ("patients", "studies", "series"):
        if key in node:
            children = [_totals(child) for child in node[key]]
            node["instances"] = sum(c["instances"] for c in children)
            node["bytes"] = sum(c["bytes"] for c in children)
            node["last_stored"] = max((c["last_stored"] for c in children), default="")
    return node


def _modified_text(root: Path, file_name: str) -> str:
    """When a stored file was written (local time), as its file says: the index keeps only
    the order of stores.  Empty when the file is missing or its name is suspicious."""
    if not is_safe_relative_name(file_name):
        return ""
    try:
        modified = os.lstat(root / file_name).st_mtime
    except OSError:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(modified))


def _size_text(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


def render_tree(tree: dict[str, Any]) -> list[str]:
    """The tree as indented text lines, with counts, sizes and dates."""
    def facts(node: dict[str, Any]) -> str:
        return (f"{node['instances']} instance(s), {_size_text(node['bytes'])}, last stored "
                f"{node['last_stored'] or '-'}")

    lines = [f"{tree['ae_title']} ({tree['storage_area']}): {len(tree['patients'])} "
             f"patient(s), {facts(tree)}"]
    for patient in tree["patients"]:
        lines.append(f"  patient {patient['patient_id']!r} {patient['patient_name']}: "
                     f"{len(patient['studies'])} study(ies), {facts(patient)}")
        for study in patient["studies"]:
            lines.append(f"    study {study['study_instance_uid']} {study['study_date']} "
                         f"{study['study_description']}".rstrip()
                         + f": {len(study['series'])} series, {facts(study)}")
            for series in study["series"]:
                lines.append(f"      series {series['series_instance_uid']} "
                             f"{series['modality']}: {facts(series)}")
    return lines


def ls_main(argv: Sequence[str]) -> int:
    """Run ``pyqrscp ls``."""
    parser = argparse.ArgumentParser(
        prog="pyqrscp ls", allow_abbrev=False,
        description="What storage areas hold: patients, studies, series, with instance counts, "
        "sizes and dates. Works while the server runs.",
        epilog="exit codes: 0 listed, 1 nothing matched a filter, 2 usage or config error")
    parser.add_argument("-c", "--config", type=Path, default=None, help="config file")
    parser.add_argument("ae_title", metavar="AETITLE", nargs="?",
                        help="only this AETable entry (default: every one)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--patient", metavar="ID", help="only this Patient ID")
    which.add_argument("--study", metavar="UID", help="only this Study Instance UID")
    which.add_argument("--series", metavar="UID", help="only this Series Instance UID")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    _add_index_db(parser)
    try:
        args = parser.parse_args(list(argv))
        config = _config(args.config)
        entries = [_entry(config, args.ae_title)] if args.ae_title else list(config.ae_table)
        backend = open_backend(index_database_url(args.index_db, config, os.environ))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except PyqrscpError as error:
        print(f"pyqrscp ls: {error}", file=sys.stderr)
        return 2
    try:
        trees = [area_tree(e, args.patient, args.study, args.series, backend)
                 for e in entries]
    except backend.driver_errors as error:
        print(f"pyqrscp ls: cannot read the index: {error}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    if args.json:
        print(json.dumps(trees, indent=2))
    else:
        for tree in trees:
            print("\n".join(render_tree(tree)))
    filtered = args.patient or args.study or args.series
    return 1 if filtered and not any(t["instances"] for t in trees) else 0


def rm_main(argv: Sequence[str]) -> int:
    """Run ``pyqrscp rm``."""
    parser = argparse.ArgumentParser(
        prog="pyqrscp rm", allow_abbrev=False,
        description="Delete a study, series or instance from a storage area: index rows and "
        "files together, crash-safe, while the server runs; one log line per deletion.",
        epilog="exit codes: 0 deleted, 1 nothing matched, 2 usage or config error "
        "(or an R area without --force)")
    parser.add_argument("-c", "--config", type=Path, default=None, help="config file")
    parser.add_argument("ae_title", metavar="AETITLE", help="the AETable entry")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", metavar="UID", help="Study Instance UID")
    which.add_argument("--series", metavar="UID", help="Series Instance UID")
    which.add_argument("--instance", metavar="UID", help="SOP Instance UID")
    parser.add_argument("--force", action="store_true",
                        help="also delete from a read-only (R) area")
    _add_index_db(parser)
    try:
        args = parser.parse_args(list(argv))
        config = _config(args.config)
        entry = _entry(config, args.ae_title)
        url = index_database_url(args.index_db, config, os.environ)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except ConfigError as error:
        print(f"pyqrscp rm: {error}", file=sys.stderr)
        return 2
    if not entry.access.can_store and not args.force:
        print(f"pyqrscp rm: {entry.ae_title} is a read-only ({entry.access.value}) area; "
              "--force deletes anyway", file=sys.stderr)
        return 2
    level = "study" if args.study else "series" if args.series else "instance"
    uid = args.study or args.series or args.instance
    return _delete(entry, level, uid, url)


def _add_index_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index-db", metavar="URL", default=None,
                        help="index database (default: the config's IndexDatabase, else "
                        "$PYQRSCP_INDEX_DB, else SQLite in each area)")


def _delete(entry: AEEntry, level: str, uid: str, url: str | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DcmtkFormatter())
    root = logging.getLogger("pyqrscp")  # the storage area's warnings too, as W: lines
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    LOGGER.setLevel(logging.INFO)  # the deletion line itself
    area: StorageArea | None = None
    try:
        area = StorageArea(entry.storage_area, entry.quota, backend=open_backend(url))
        area.open()
        count, size = area.delete(level, uid)
        if not count:
            print(f"pyqrscp rm: no {level} {uid} in {entry.ae_title}", file=sys.stderr)
            return 1
        LOGGER.info("deleted %s %s from %s (%s): %d instance(s), %d bytes", level, uid,
                    entry.ae_title, entry.storage_area, count, size)
        return 0
    except (PyqrscpError, OSError) as error:
        print(f"pyqrscp rm: {error}", file=sys.stderr)
        return 2
    finally:
        if area is not None:
            area.close()
            area.backend.close()
        root.removeHandler(handler)
