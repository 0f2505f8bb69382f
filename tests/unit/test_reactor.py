"""link/reactor.py: the event-driven reactor loses no wake-up, and a sender waits for the DUL.

The reactor runs on a stand-in association (only what its loop reads), in the test's own
thread, with a wake-up event that never blocks: the event records every wait that would
sleep while a message is queued (a lost wake-up: the message would then lie until the
wait's timeout) instead of sleeping.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import cast

from pynetdicom.association import Association

from pyqrscp.link.reactor import _WAKE, WakingQueue, run_reactor


class RecordingEvent(threading.Event):
    """A wake-up event whose ``wait`` returns at once and records a wait that would
    sleep (the event not set) while messages are queued."""

    def __init__(self, messages: queue.Queue[tuple[int, object]]) -> None:
        super().__init__()
        self.messages = messages
        self.lost: list[int] = []

    def wait(self, timeout: float | None = None) -> bool:
        if not self.is_set() and not self.messages.empty():
            self.lost.append(self.messages.qsize())
        return self.is_set()


@dataclass
class StandInDimse:
    msg_queue: queue.Queue[tuple[int, object]] = field(default_factory=queue.Queue)

    def get_msg(self, block: bool = False) -> tuple[int | None, object | None]:
        try:
            return self.msg_queue.get(block=block)
        except queue.Empty:
            return None, None


class StandInAcse:
    def is_release_requested(self) -> bool:
        return False

    def is_aborted(self, abort_type: str = "both") -> bool:
        return False


class StandInDul:
    def is_alive(self) -> bool:
        return True

    def idle_timer_expired(self) -> bool:
        return False


class StandInAssociation:
    """What ``run_reactor`` reads of pynetdicom's Association; ends after ``expected``
    requests are served."""

    def __init__(self, expected: int) -> None:
        self.dimse = StandInDimse()
        self.acse = StandInAcse()
        self.dul = StandInDul()
        self.is_established = True
        self._kill = False
        self._is_paused = False
        self._reactor_checkpoint = threading.Event()
        self._reactor_checkpoint.set()
        self.served: list[object] = []
        self.expected = expected
        self.wake = RecordingEvent(self.dimse.msg_queue)
        self.__dict__[_WAKE] = self.wake

    def _serve_request(self, message: object, context_id: int) -> None:
        self.served.append(message)
        self._kill = len(self.served) >= self.expected


def test_messages_queued_under_one_wake_up_are_all_served_without_waiting() -> None:
    """Two messages queued before the reactor looks (the DUL queues both while it serves
    another request, or decodes both from one read): each put sets the event, but one
    turn serves one message; the second must not wait for a wake-up that was already
    spent."""
    assoc = StandInAssociation(expected=2)
    for message in ("first", "second"):
        assoc.dimse.msg_queue.put((1, message))
        assoc.wake.set()
    assert run_reactor(cast(Association, assoc))
    assert assoc.served == ["first", "second"]
    assert assoc.wake.lost == []


def test_a_message_queued_while_one_is_served_is_served_next() -> None:
    """A message the DUL queues while the reactor serves another sets the event after
    the reactor cleared it: the next turn comes without a wait."""
    assoc = StandInAssociation(expected=3)
    serve = assoc._serve_request

    def serve_and_queue_next(message: object, context_id: int) -> None:
        if message == "first":
            assoc.dimse.msg_queue.put((1, "second"))
            assoc.dimse.msg_queue.put((1, "third"))
            assoc.wake.set()
        serve(message, context_id)

    assoc._serve_request = serve_and_queue_next  # type: ignore[method-assign]
    assoc.dimse.msg_queue.put((1, "first"))
    assoc.wake.set()
    assert run_reactor(cast(Association, assoc))
    assert assoc.served == ["first", "second", "third"]
    assert assoc.wake.lost == []


def test_a_waiting_sender_is_woken_by_the_consumer_taking_items() -> None:
    woken: list[None] = []
    waiting = WakingQueue(lambda: woken.append(None))
    for item in range(3):
        waiting.put(item)
    assert len(woken) == 3
    assert not waiting.wait_below(1, 0)
    consumer = threading.Thread(target=lambda: [waiting.get() for _ in range(3)])
    consumer.start()
    assert waiting.wait_below(1, 60)
    consumer.join()
    assert waiting.empty()


def test_a_closed_queue_stops_the_wait_and_says_what_is_left() -> None:
    waiting = WakingQueue(lambda: None)
    waiting.put("unsent")
    closer = threading.Thread(target=waiting.close)
    closer.start()
    assert not waiting.wait_below(1, 60)  # returns at the close, not after a minute
    closer.join()
    assert waiting.closed and waiting.wait_below(2, 0)
