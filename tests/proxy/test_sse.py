"""Stream reassembly: any split of the bytes gives the same non-streaming shape."""

from __future__ import annotations

import random

import orjson

from proxy.sse import reassemble
from tests.fakes.teacher import FakeTeacher

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def sse(chunks: list[dict[str, object]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def random_split(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(30, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_any_byte_split_reassembles_to_the_non_streaming_answer() -> None:
    fake = FakeTeacher()
    payloads = [
        {
            "messages": [{"role": "user", "content": "tell me more"}],
            "n": 2,
            "logprobs": True,
            "top_logprobs": 1,
            "stream_options": {"include_usage": True},
        },
        {"messages": [{"role": "user", "content": "weather?"}], "tools": [TOOL]},
    ]
    rng = random.Random(3)
    for payload in payloads:
        expected = fake.completion(payload)
        data = sse(fake.chunks(payload))
        for _ in range(20):
            result = reassemble(random_split(data.replace(b"\n\n", b"\r\n\r\n"), rng))
            assert result.done and result.error is None and result.response is not None
            for got, want in zip(result.response["choices"], expected["choices"], strict=True):
                assert got["message"] == want["message"]
                assert got["finish_reason"] == want["finish_reason"]
                assert got.get("logprobs") == want.get("logprobs")


def test_cut_stream_is_not_done_and_error_events_are_kept() -> None:
    fake = FakeTeacher()
    data = sse(fake.chunks({"messages": [{"role": "user", "content": "a b c"}]}))
    cut = reassemble([data[: len(data) // 2]])
    assert not cut.done and cut.response is not None
    error = reassemble([b'data: {"error": {"message": "overloaded"}}\n\n'])
    assert error.response is None and error.error == {"message": "overloaded"}
