"""Each newly stored instance's DICOM JSON, written by a thread of the area's own.

Describing an instance (pydicom reads it whole and turns every element into JSON) costs about
half of what storing it does; done on the C-STORE path it took a third of the store rate.  The
writer is told of each instance the area stores, waits until stores pause (:attr:`quiet`
seconds without one), then describes them from their files, a few at a time, and keeps the
JSON in the index, one write transaction per batch; a store arriving meanwhile sends it back
to waiting.  What is still waiting at a stop, or was stored while no writer ran, is described
by the first WADO-RS ``/metadata`` request that needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from pyqrscp.errors import PyqrscpError

LOGGER = logging.getLogger(__name__)

QUIET_SECONDS = 0.25
BATCH = 32
STOP_SECONDS = 10.0

Pending = tuple[str, str]
"""``(SOP Instance UID, file name)`` of an instance to describe."""
Described = tuple[str, str, bytes]
"""``(SOP Instance UID, file name, DICOM JSON)``."""


class MetadataWriter:
    """A thread that describes the instances it is told of once stores pause.

    ``read`` gives a stored file's bytes (OSError when it has gone: replaced, evicted or
    deleted meanwhile), ``describe`` makes the JSON (PyqrscpError when it cannot), ``keep``
    stores a batch of them in the index.
    """

    def __init__(self, read: Callable[[str], bytes], describe: Callable[[bytes], bytes],
                 keep: Callable[[list[Described]], None], name: str = "",
                 quiet: float = QUIET_SECONDS) -> None:
        self.read, self.describe, self.keep = read, describe, keep
        self._quiet = quiet
        self._pending: deque[Pending] = deque()
        self._changed = threading.Condition()
        self._last_store = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"pyqrscp-describe {name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the instance being described; what is pending is left to requests."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_SECONDS)

    def stored(self, sop_instance_uid: str, file_name: str) -> None:
        """Note a stored instance (cheap: the C-STORE path calls this)."""
        with self._changed:
            if not self._pending:
                self._changed.notify_all()  # else it is already waiting for stores to pause
            self._pending.append((sop_instance_uid, file_name))
            self._last_store = time.monotonic()

    @property
    def quiet(self) -> float:
        """Seconds without a store before describing starts (or resumes)."""
        return self._quiet

    @quiet.setter
    def quiet(self, seconds: float) -> None:
        with self._changed:
            self._quiet = seconds
            self._changed.notify_all()

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._pending)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            done = self._describe(batch)
            if done:
                try:
                    self.keep(done)
                except PyqrscpError as error:
                    LOGGER.error("metadata of %d instance(s) not kept: %s", len(done), error)

    def _next_batch(self) -> list[Pending] | None:
        """Up to :data:`BATCH` instances once stores have paused; None when stopping."""
        with self._changed:
            while not self._stopping:
                idle = time.monotonic() - self._last_store
                if not self._pending:
                    self._changed.wait()
                elif idle < self._quiet:
                    self._changed.wait(self._quiet - idle)
                else:
                    count = min(BATCH, len(self._pending))
                    return [self._pending.popleft() for _ in range(count)]
            return None

    def _describe(self, batch: list[Pending]) -> list[Described]:
        """The JSON of each instance of ``batch``; those not reached before a store arrived
        (or a stop) go back to the front of the queue."""
        with self._changed:
            started = self._last_store
        done: list[Described] = []
        for position, (sop_instance_uid, file_name) in enumerate(batch):
            with self._changed:
                if self._last_store != started or self._stopping:
                    self._pending.extendleft(reversed(batch[position:]))
                    break
            try:
                done.append((sop_instance_uid, file_name, self.describe(self.read(file_name))))
            except OSError:
                LOGGER.debug("%s is gone before it was described", file_name)
            except PyqrscpError as error:
                LOGGER.warning("no metadata kept for %s: %s", sop_instance_uid, error)
        return done
