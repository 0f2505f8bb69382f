"""A stop request that a signal handler can make without taking any lock.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread
happens to be.  ``threading.Event.set()`` takes the event's lock; when the signal lands while the
main thread itself holds that lock (inside ``Event.wait()``, between taking the lock and sleeping,
or after waking), ``set()`` waits for a lock its own thread holds and the process never stops:
every later SIGINT or SIGTERM blocks the same way.  Writing a logging line from the handler has
the same hazard with the stream being written.  So the handler only stores the signal number and
writes one byte into a socket pair; the main thread sleeps in a selector on the other end and
does the logging itself.  A socket pair (not a pipe) because Windows selects on sockets only.
"""

from __future__ import annotations

import selectors
import socket


class StopRequests:
    """Wakes the thread waiting in :meth:`wait` from a signal handler or any other thread."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        # a selector, not select.select(): that refuses descriptors numbered 1024 and above
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._reader, selectors.EVENT_READ)
        self.signum: int | None = None
        """The signal that asked for the stop, None when none did."""
        self._requested = False

    def request(self, signum: int | None = None) -> None:
        """Ask for a stop; safe in a signal handler (no lock, no allocation that can block)."""
        if signum is not None:
            self.signum = signum
        self._requested = True
        try:
            self._writer.send(b"\0")
        except OSError:  # the pair is full (a stop is already pending) or closed
            pass

    @property
    def requested(self) -> bool:
        return self._requested

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is requested (or ``timeout`` seconds pass); whether one was."""
        if not self._requested:
            try:
                self._selector.select(timeout)
            except (OSError, ValueError):  # closed
                pass
        try:
            while self._reader.recv(64):
                pass
        except OSError:  # drained (BlockingIOError) or closed
            pass
        return self._requested

    def close(self) -> None:
        """Close the pair; a later :meth:`request` does nothing."""
        self._selector.close()
        self._reader.close()
        self._writer.close()
