"""What ``pyqrscp index`` prints as it goes: skipped files, a progress bar, the summary.

The progress bar (tqdm: files done, rate, time left) is drawn only on a terminal; in a pipe, a
log or a test the output is the skip lines and the summary alone.  Files that are not DICOM at
all (a folder of mixed files is common) are summed up in one line at the end instead of one
line each.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO

from tqdm import tqdm

NOT_DICOM = "File is missing DICOM File Meta Information"
NAMES_SHOWN = 3
"""Names of non-DICOM files the summary line shows."""


@dataclass(slots=True)
class Report:
    """One run's report; ``skipped`` decides the exit code (see :meth:`finish`)."""

    err: TextIO
    show_progress: bool = False
    total: int = 0
    done: int = 0
    indexed_count: int = 0
    skipped: list[str] = field(default_factory=list)
    not_dicom: list[str] = field(default_factory=list)
    _bar: tqdm[NoReturn] | None = None

    def begin(self, total: int) -> None:
        self.total = total
        if self.show_progress:
            # a terminal of unknown size (0 x 0, as a new pty) gets 80 x 24, not nothing
            size = shutil.get_terminal_size()
            self._bar = tqdm(total=total, initial=self.done, desc="indexing", unit=" files",
                             file=self.err, ncols=size.columns, nrows=size.lines,
                             mininterval=0.5, leave=False)

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)

    def skip(self, path: Path, reason: str) -> None:
        """One line per file that is DICOM but cannot go in; non-DICOM files are summed up."""
        self.skipped.append(str(path))
        if NOT_DICOM in reason:
            self.not_dicom.append(str(path))
        else:
            self._print(f"pyqrscp index: skipped {path}: {reason}")

    def indexed(self, count: int) -> None:
        self.indexed_count += count

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.err)
        else:
            print(line, file=self.err)

    def finish(self, what: str) -> int:
        """Print the summary; return the exit code (1 when anything was skipped)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if len(self.not_dicom) == 1:
            self._print(f"pyqrscp index: skipped {self.not_dicom[0]}: not DICOM (no DICOM file "
                        "meta information)")
        elif self.not_dicom:
            shown = ", ".join(self.not_dicom[:NAMES_SHOWN])
            more = len(self.not_dicom) - NAMES_SHOWN
            self._print(f"pyqrscp index: skipped {len(self.not_dicom)} files that are not "
                        f"DICOM (no DICOM file meta information): {shown}"
                        + (f" and {more} more" if more > 0 else ""))
        print(f"{what}: {self.indexed_count} file(s) indexed, {len(self.skipped)} skipped")
        return 1 if self.skipped else 0
