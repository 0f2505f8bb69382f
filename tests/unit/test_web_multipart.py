"""The multipart/related push parser: any split of the bytes gives the same parts; bodies
that end early or have broken headers are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyqrscp.web.multipart import (
    MalformedMultipart,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    content_type_params,
)

BOUNDARY = "b0undary"


def body(*parts: bytes, preamble: bytes = b"") -> bytes:
    return preamble + b"".join(b"--b0undary\r\nContent-Type: application/dicom\r\n\r\n" + p
                               + b"\r\n" for p in parts) + b"--b0undary--"


def parse(data: bytes, cuts: list[int]) -> list[tuple[dict[str, str], bytes]]:
    parser = MultipartParser(BOUNDARY)
    parts: list[tuple[dict[str, str], bytes]] = []
    data_parts: list[bytes] = []
    headers: dict[str, str] = {}
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        for event in parser.feed(data[start:cut]):
            if isinstance(event, PartStart):
                headers, data_parts = event.headers, []
            elif isinstance(event, PartData):
                data_parts.append(event.data)
            elif isinstance(event, PartEnd):
                parts.append((headers, b"".join(data_parts)))
        start = max(start, cut)
    parser.finish()
    return parts


PAYLOADS = [b"", b"\r\n--b0undar", b"x" * 1000, b"-b0undary\r\n", b"\r\n\r\n"]
"""Part contents that come close to, but never hold, the delimiter (CRLF--b0undary)."""


@given(st.lists(st.integers(min_value=0, max_value=1200), max_size=6))
def test_any_split_gives_the_same_parts(cuts: list[int]) -> None:
    data = body(*PAYLOADS, preamble=b"\r\n")
    parts = parse(data, cuts)
    assert [p for _, p in parts] == PAYLOADS
    assert parts[0][0] == {"content-type": "application/dicom"}


def test_a_body_without_its_close_delimiter_is_refused() -> None:
    with pytest.raises(MalformedMultipart, match="closing boundary"):
        parse(body(b"abc")[:-2], [])
    with pytest.raises(MalformedMultipart, match="closing boundary"):
        parse(b"no boundary anywhere", [])


def test_broken_headers_are_refused() -> None:
    with pytest.raises(MalformedMultipart, match="colon"):
        parse(b"--b0undary\r\nno colon here\r\n\r\nx\r\n--b0undary--", [])
    with pytest.raises(MalformedMultipart, match="CRLF"):
        parse(b"--b0undaryX\r\n\r\nx\r\n--b0undary--", [])
    with pytest.raises(MalformedMultipart, match="longer"):
        parse(b"--b0undary\r\nA: " + b"x" * 20000, [])


def test_padding_after_a_boundary_is_bounded() -> None:
    parts = parse(b"--b0undary \t \r\n\r\nx\r\n--b0undary--", [])
    assert [data for _headers, data in parts] == [b"x"]
    parser = MultipartParser(BOUNDARY)
    parser.feed(b"--b0undary")
    with pytest.raises(MalformedMultipart, match="padding"):
        for _ in range(100):
            parser.feed(b" " * 64)


def test_content_type_parameters() -> None:
    kind, params, unquoted = content_type_params(
        'Multipart/Related; type="application/dicom"; boundary=abc; start="<a;b>"')
    assert kind == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "abc", "start": "<a;b>"}
    assert unquoted == {"boundary"}
