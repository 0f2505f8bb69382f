"""The C-MOVE/C-GET sub-operation loop (``services/retrieve.run_sub_operations``): the next
request is prepared while the receiver works on the current one, and everything is still
reported in instance order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota
from pyqrscp.errors import PeerUnavailable, SubOperationFailed
from pyqrscp.services.retrieve import Progress, Selection, run_sub_operations


class Recorder:
    """A receiver that records the order of the loop's steps; statuses by instance."""

    def __init__(self, statuses: dict[str, int], unpreparable: frozenset[str] = frozenset(),
                 gone_at: str = "") -> None:
        self.steps: list[str] = []
        self.statuses = statuses
        self.unpreparable = unpreparable
        self.gone_at = gone_at

    def prepare(self, sop_instance: str, sop_class: str, transfer_syntax: str,
                path: Path) -> str:
        self.steps.append(f"prepare {sop_instance}")
        if sop_instance in self.unpreparable:
            raise SubOperationFailed(f"no context for {sop_instance}")
        return sop_instance

    def start(self, request: Any) -> None:
        self.steps.append(f"start {request}")
        if request == self.gone_at:
            raise PeerUnavailable("gone")

    def finish(self, request: Any) -> int:
        self.steps.append(f"finish {request}")
        return self.statuses.get(request, 0x0000)


def selection(*uids: str) -> Selection:
    return Selection(tuple((uid, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", uid)
                           for uid in uids))


def run(tmp_path: Path, sender: Recorder, *uids: str) -> tuple[Progress, list[str]]:
    area = StorageArea(tmp_path, Quota(100, 1 << 30), durable=False)
    reported: list[str] = []

    def pending(progress: Progress) -> None:
        sender.steps.append(f"pending {progress.remaining}")
        reported.append(f"{progress.completed}/{progress.failed}/{progress.remaining}")

    return run_sub_operations(selection(*uids), area, sender, lambda: False, pending), reported


def test_the_next_request_is_prepared_while_the_current_one_is_out(tmp_path: Path) -> None:
    sender = Recorder({})
    progress, _ = run(tmp_path, sender, "a", "b", "c")
    assert sender.steps == [
        "prepare a", "start a", "prepare b", "finish a", "pending 2",
        "start b", "prepare c", "finish b", "pending 1",
        "start c", "finish c", "pending 0"]
    assert (progress.completed, progress.failed, progress.remaining) == (3, 0, 0)


def test_a_request_that_cannot_be_prepared_fails_at_its_turn(tmp_path: Path) -> None:
    sender = Recorder({"c": 0xA700}, unpreparable=frozenset({"b"}))
    progress, reported = run(tmp_path, sender, "a", "b", "c")
    assert reported == ["1/0/2", "1/1/1", "1/2/0"]
    assert progress.failed_uids == ["b", "c"]
    assert "start b" not in sender.steps


def test_a_receiver_gone_fails_every_instance_left(tmp_path: Path) -> None:
    sender = Recorder({}, gone_at="b")
    progress, reported = run(tmp_path, sender, "a", "b", "c")
    assert reported == ["1/0/2"]
    assert (progress.completed, progress.failed) == (1, 2)
    assert progress.failed_uids == ["b", "c"]
