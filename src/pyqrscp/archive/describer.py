"""Each newly stored instance's DICOM JSON, written by a thread of the area's own.

Describing an instance (pydicom parses it, passing over bulk values, and turns every element
into JSON) costs about half of what storing it does; done on the C-STORE path it took a
third of the store rate.  The writer is told of each instance the area stores, waits until
stores pause (:attr:`quiet` seconds without one), then describes them from their files, a
few at a time, and keeps the JSON in the index, one write transaction per batch; a store
arriving meanwhile sends it back to waiting.  Under a stream of stores that never pauses, an
instance waits at most :attr:`longest_wait` seconds: then batches are described while stores
go on.  At most :data:`MAX_PENDING` instances wait (the oldest are dropped beyond).  What is
dropped, still waiting at a stop, or was stored while no writer ran, is described by the
first WADO-RS ``/metadata`` request that needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

from pyqrscp.errors import PyqrscpError

LOGGER = logging.getLogger(__name__)

QUIET_SECONDS = 0.25
LONGEST_WAIT_SECONDS = 3.0
MAX_PENDING = 10_000
BATCH = 32
STOP_SECONDS = 10.0

Pending = tuple[str, str]
"""``(SOP Instance UID, file name)`` of an instance to describe."""
Described = tuple[str, str, bytes]
"""``(SOP Instance UID, file name, DICOM JSON)``."""
_Waiting = tuple[str, str, float]
"""A pending instance and when it was stored (``time.monotonic()``)."""


class MetadataWriter:
    """A thread that describes the instances it is told of once stores pause.

    ``undescribed`` gives those of a batch that still need JSON (not described by a request
    meanwhile, still indexed under that file), ``read`` opens a stored file (OSError when it
    has gone: replaced, evicted or deleted meanwhile), ``describe`` makes the JSON from the
    open file, reading only what it needs (PyqrscpError when it cannot), ``keep`` stores a
    batch of them in the index.
    """

    def __init__(self, undescribed: Callable[[list[Pending]], list[Pending]],
                 read: Callable[[str], BinaryIO], describe: Callable[[BinaryIO], bytes],
                 keep: Callable[[list[Described]], None], name: str = "",
                 quiet: float = QUIET_SECONDS, longest_wait: float = LONGEST_WAIT_SECONDS,
                 limit: int = MAX_PENDING) -> None:
        self.undescribed, self.read, self.describe, self.keep = undescribed, read, describe, keep
        self._quiet, self._longest_wait, self.limit = quiet, longest_wait, limit
        self._pending: deque[_Waiting] = deque()
        self._dropping = False
        self.stop_seconds = STOP_SECONDS
        """How long :meth:`stop` waits for the instance being described."""
        self._changed = threading.Condition()
        self._last_store = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"pyqrscp-describe {name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the instance being described (waiting at most :attr:`stop_seconds`);
        what is pending is left to requests."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=self.stop_seconds)
            if self._thread.is_alive():
                LOGGER.warning("metadata writer %s still describing; not waited for",
                               self._thread.name)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stored(self, sop_instance_uid: str, file_name: str) -> None:
        """Note a stored instance (cheap: the C-STORE path calls this)."""
        with self._changed:
            if not self._pending:
                self._changed.notify_all()  # else it is already waiting for stores to pause
            self._last_store = time.monotonic()
            self._pending.append((sop_instance_uid, file_name, self._last_store))
            self._drop_beyond_limit()

    def _drop_beyond_limit(self) -> None:
        """Forget the oldest beyond :attr:`limit` (requests describe them); the caller holds
        the condition."""
        if len(self._pending) <= self.limit:
            return
        if not self._dropping:
            self._dropping = True
            LOGGER.warning("metadata writer: more than %d instances waiting; the oldest are "
                           "left to /metadata requests", self.limit)
        while len(self._pending) > self.limit:
            self._pending.popleft()

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
    def longest_wait(self) -> float:
        """Seconds an instance waits at most for stores to pause."""
        return self._longest_wait

    @longest_wait.setter
    def longest_wait(self, seconds: float) -> None:
        with self._changed:
            self._longest_wait = seconds
            self._changed.notify_all()

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._pending)

    def _run(self) -> None:
        while (next_batch := self._next_batch()) is not None:
            done = self._describe(*next_batch)
            if done:
                try:
                    self.keep(done)
                except PyqrscpError as error:
                    LOGGER.error("metadata of %d instance(s) not kept: %s", len(done), error)

    def _next_batch(self) -> tuple[list[_Waiting], bool] | None:
        """Up to :data:`BATCH` instances once stores have paused or the oldest has waited
        :attr:`longest_wait` (then True: describe the batch even while stores arrive); None
        when stopping."""
        with self._changed:
            while not self._stopping:
                if not self._pending:
                    self._dropping = False
                    self._changed.wait()
                    continue
                now = time.monotonic()
                overdue = self._pending[0][2] + self._longest_wait
                due = min(self._last_store + self._quiet, overdue)
                if now < due:
                    self._changed.wait(due - now)
                    continue
                count = min(BATCH, len(self._pending))
                return [self._pending.popleft() for _ in range(count)], now >= overdue
            return None

    def _describe(self, batch: list[_Waiting], overdue: bool) -> list[Described]:
        """The JSON of each instance of ``batch``; unless ``overdue``, those not reached
        before a store arrived (or a stop) go back to the front of the queue."""
        with self._changed:
            started = self._last_store
        try:
            wanted = set(self.undescribed([(uid, name) for uid, name, _ in batch]))
        except PyqrscpError as error:
            LOGGER.error("metadata writer: cannot look up %d instance(s): %s", len(batch), error)
            return []
        batch = [waiting for waiting in batch if waiting[:2] in wanted]
        done: list[Described] = []
        for position, (sop_instance_uid, file_name, _stored_at) in enumerate(batch):
            with self._changed:
                if self._stopping or (self._last_store != started and not overdue):
                    self._pending.extendleft(reversed(batch[position:]))
                    self._drop_beyond_limit()
                    break
            try:
                with self.read(file_name) as stream:
                    done.append((sop_instance_uid, file_name, self.describe(stream)))
            except OSError:
                LOGGER.debug("%s is gone before it was described", file_name)
            except PyqrscpError as error:
                LOGGER.warning("no metadata kept for %s: %s", sop_instance_uid, error)
        return done
