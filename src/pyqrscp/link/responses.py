"""The one wait for a C-STORE-RSP, whoever reads the messages.

pyqrscp sends C-STORE sub-operations three ways: on a C-MOVE sub-association it opened itself
(:mod:`pyqrscp.link.sender`), and on a C-GET's own association either holding its socket
(:mod:`pyqrscp.link.channel`) or through pynetdicom's queues.  Each way reads the next message
differently; :func:`await_store_response` is the one loop that waits for the response to a
given request among them, with one deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom.dimse_primitives import C_STORE

from pyqrscp.dimse.commands import (
    C_STORE_RQ,
    C_STORE_RSP,
    COMMAND_FIELD,
    ERROR_COMMENT,
    MESSAGE_ID_BEING_RESPONDED_TO,
    STATUS,
    command_text,
    command_us,
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the wait needs of a message that arrived: its command field, the Message ID it
    responds to (a response's, a C-CANCEL-RQ's), and a response's status."""

    command_field: int
    responded_to: int
    status: int | None = None
    error_comment: str = ""

    @classmethod
    def of_command(cls, command: dict[int, bytes]) -> Reply:
        """From a command set's elements (as :mod:`pyqrscp.dimse.pdus` assembles them)."""
        status = command_us(command, STATUS) if STATUS in command else None
        return cls(command_us(command, COMMAND_FIELD),
                   command_us(command, MESSAGE_ID_BEING_RESPONDED_TO), status,
                   command_text(command, ERROR_COMMENT))

    @classmethod
    def of_primitive(cls, message: object) -> Reply:
        """From a message pynetdicom decoded (only C-STORE responses are told apart)."""
        if isinstance(message, C_STORE) and message.is_valid_response:
            return cls(C_STORE_RSP, int(message.MessageIDBeingRespondedTo or 0),
                       int(message.Status) if message.Status is not None else None,
                       str(message.ErrorComment or ""))
        return cls(C_STORE_RQ if isinstance(message, C_STORE) else 0, 0)


@dataclass(frozen=True, slots=True)
class StoreResponse:
    """A C-STORE-RSP's status and error comment."""

    status: int
    error_comment: str = ""


ReadReply = Callable[[float], Reply | None]
"""Waits up to the given seconds for the next message; None when none came.  Raises
:class:`~pyqrscp.errors.PeerUnavailable` when the association is gone."""


def await_store_response(read: ReadReply, message_id: int, timeout: float,
                         other: Callable[[Reply], None]) -> StoreResponse | None:
    """The response to the C-STORE-RQ ``message_id``; every other message on the way goes to
    ``other`` (which notes a C-CANCEL-RQ, ignores or raises); None when ``timeout`` seconds
    pass first (the caller aborts: the DIMSE timeout)."""
    deadline = time.monotonic() + timeout
    while (wait := deadline - time.monotonic()) > 0:
        reply = read(wait)
        if reply is None:
            continue
        if (reply.command_field == C_STORE_RSP and reply.responded_to == message_id
                and reply.status is not None):
            return StoreResponse(reply.status, reply.error_comment)
        other(reply)
    return None
