"""The fake's shared HTTP and SSE framing."""

from __future__ import annotations

import random

from tests.fakes.wire import parse_json, split, sse, typed_sse

STREAM = typed_sse([{"type": "a", "n": 1}, {"type": "b", "text": "é"}]) + sse({"c": 3})


def test_a_seeded_split_cuts_anywhere_and_loses_nothing() -> None:
    pieces = split(STREAM, random.Random(3))
    assert b"".join(pieces) == STREAM
    assert len(pieces) > 3 and all(1 <= len(p) <= 40 for p in pieces)
    assert pieces == split(STREAM, random.Random(3))  # the same seed, the same cuts


def test_no_generator_writes_one_piece_per_event() -> None:
    assert split(STREAM, None) == [
        b'event: a\ndata: {"type":"a","n":1}\n\n',
        'event: b\ndata: {"type":"b","text":"é"}\n\n'.encode(),
        b'data: {"c":3}\n\n',
    ]


def test_only_a_json_object_is_a_body() -> None:
    assert parse_json(b"") == ({}, True)
    assert parse_json(b'{"a": 1}') == ({"a": 1}, True)
    assert parse_json(b"[1, 2]") == ({}, False)
    assert parse_json(b"{not json") == ({}, False)
