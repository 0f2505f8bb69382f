"""findscu as a function: responses read back with pydicom, the final DIMSE status as a number."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from helpers import DCMTK_ENV, TOOL_TIMEOUT
from pydicom.dataset import Dataset

_STATUS = r"Message Type\s*:\s*{}.*?DIMSE Status\s*:\s*0x([0-9a-fA-F]{{4}})"


def dimse_statuses(output: str, message_type: str) -> list[int]:
    """The status of every ``message_type`` (e.g. ``C-MOVE RSP``) in a DCMTK tool's ``-d`` log."""
    pattern = re.compile(_STATUS.format(re.escape(message_type)), re.DOTALL)
    return [int(code, 16) for code in pattern.findall(output)]


@dataclass(frozen=True)
class FindResult:
    """What one findscu run saw."""

    returncode: int
    responses: Sequence[Dataset]
    statuses: list[int]
    output: str

    @property
    def final_status(self) -> int | None:
        """The status of the last C-FIND-RSP (None if none arrived, e.g. association refused)."""
        return self.statuses[-1] if self.statuses else None

    def values(self, keyword: str) -> list[str]:
        """The text of ``keyword`` in every response, sorted."""
        return sorted(str(ds.get(keyword, "")) for ds in self.responses)


def findscu(port: int, model: str, keys: Sequence[str], *, called_aet: str = "ARCHIVE",
            query_file: Path | None = None, extra: Sequence[str] = ()) -> FindResult:
    """Run ``findscu -d -X <model>`` against localhost; ``keys`` are ``-k`` arguments.

    ``query_file`` is a DICOM identifier written with pydicom (to send non-ASCII text in a
    declared character set, which ``-k`` cannot).
    """
    with tempfile.TemporaryDirectory() as out:
        args = ["findscu", model, "-d", "-X", "-od", out, "-aec", called_aet, *extra,
                "localhost", str(port)]
        for key in keys:
            args += ["-k", key]
        if query_file is not None:
            args.append(str(query_file))
        # findscu echoes identifiers in their own charset (Latin-1 too): decode leniently.
        completed = subprocess.run(args, capture_output=True, text=True, errors="replace",
                                   timeout=TOOL_TIMEOUT, env=DCMTK_ENV)
        responses = [pydicom.dcmread(path) for path in sorted(Path(out).glob("rsp*.dcm"))]
    output = completed.stdout + completed.stderr
    statuses = dimse_statuses(output, "C-FIND RSP")
    return FindResult(completed.returncode, responses, statuses, output)


def write_query(path: Path, charset: str, **values: str) -> Path:
    """A query identifier file in ``charset`` with the given keyword values."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False)
    return path
