"""A push parser for ``multipart/related`` bodies (RFC 2046 5.1, RFC 2387), bounded.

Bytes go in as they arrive (:meth:`MultipartParser.feed`); out come part headers, part data
and part ends.  A body that ends before its close delimiter, a header block past
:data:`MAX_HEADER_BYTES`, padding after a boundary past :data:`MAX_PADDING_BYTES`, or header
lines without a colon raise :class:`MalformedMultipart`.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEADER_BYTES = 16 << 10
MAX_PADDING_BYTES = 1 << 10
"""Blanks allowed after a boundary (RFC 2046's transport padding); a run without end would
be kept, and copied again on every read."""


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart body (answered 400)."""


@dataclass(frozen=True, slots=True)
class PartStart:
    headers: dict[str, str]
    """Header names in lower case."""


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def content_type_params(value: str) -> tuple[str, dict[str, str], set[str]]:
    """``(media type, parameters, names of unquoted parameters)`` of a Content-Type value;
    quoted values may hold ``;``."""
    items: list[str] = []
    current, quoted = "", False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    params: dict[str, str] = {}
    unquoted: set[str] = set()
    for item in items[1:]:
        name, _, raw = item.strip().partition("=")
        name = name.strip().lower()
        raw = raw.strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            params[name] = raw[1:-1]
        else:
            params[name] = raw
            unquoted.add(name)
    return items[0].strip().lower(), params, unquoted


class MultipartParser:
    """Splits one multipart body on ``boundary`` (without its leading ``--``)."""

    def __init__(self, boundary: str) -> None:
        self.dash_boundary = b"--" + boundary.encode("latin-1")
        self.delimiter = b"\r\n" + self.dash_boundary
        self.buffer = bytearray()
        self.state = "preamble"

    @property
    def done(self) -> bool:
        return self.state == "end"

    def feed(self, chunk: bytes) -> list[Event]:
        """The events the bytes so far complete."""
        if self.state == "end":
            return []
        self.buffer += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self) -> None:
        """The body has ended: it must have ended with its close delimiter."""
        if self.state != "end":
            raise MalformedMultipart("the body ended before its closing boundary "
                                     f"({self.dash_boundary.decode('latin-1')}--)")

    def _step(self, events: list[Event]) -> bool:
        if self.state == "preamble":
            return self._preamble()
        if self.state == "after_delimiter":
            return self._after_delimiter(events)
        if self.state == "headers":
            return self._headers(events)
        if self.state == "body":
            return self._body(events)
        return False

    def _preamble(self) -> bool:
        if self.buffer.startswith(self.dash_boundary):
            del self.buffer[:len(self.dash_boundary)]
        else:
            found = self.buffer.find(self.delimiter)
            if found < 0:
                keep = len(self.delimiter) - 1
                if len(self.buffer) > keep:
                    del self.buffer[:len(self.buffer) - keep]
                return False
            del self.buffer[:found + len(self.delimiter)]
        self.state = "after_delimiter"
        return True

    def _after_delimiter(self, events: list[Event]) -> bool:
        stripped = bytes(self.buffer).lstrip(b" \t")
        if len(stripped) < 2:
            if len(self.buffer) > MAX_PADDING_BYTES:
                raise MalformedMultipart(f"more than {MAX_PADDING_BYTES} bytes of padding "
                                         "after a boundary")
            return False
        if stripped.startswith(b"--"):
            self.state = "end"
            self.buffer.clear()
            return False
        if not stripped.startswith(b"\r\n"):
            raise MalformedMultipart("a boundary line is not followed by CRLF")
        del self.buffer[:len(self.buffer) - len(stripped) + 2]
        self.state = "headers"
        return True

    def _headers(self, events: list[Event]) -> bool:
        if self.buffer.startswith(b"\r\n"):
            end, block = 2, b""
        else:
            found = self.buffer.find(b"\r\n\r\n")
            if found < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    raise MalformedMultipart(f"part headers longer than {MAX_HEADER_BYTES} "
                                             "bytes")
                return False
            end, block = found + 4, bytes(self.buffer[:found])
        headers: dict[str, str] = {}
        for line in block.split(b"\r\n") if block else []:
            name, colon, value = line.partition(b":")
            if not colon:
                raise MalformedMultipart(f"part header line without a colon: {line[:60]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        del self.buffer[:end]
        events.append(PartStart(headers))
        self.state = "body"
        return True

    def _body(self, events: list[Event]) -> bool:
        found = self.buffer.find(self.delimiter)
        if found < 0:
            keep = len(self.delimiter) - 1
            if len(self.buffer) > keep:
                events.append(PartData(bytes(self.buffer[:len(self.buffer) - keep])))
                del self.buffer[:len(self.buffer) - keep]
            return False
        if found:
            events.append(PartData(bytes(self.buffer[:found])))
        events.append(PartEnd())
        del self.buffer[:found + len(self.delimiter)]
        self.state = "after_delimiter"
        return True
