"""The redactor: every secret replaced, in whole bodies and in streams cut anywhere."""

from __future__ import annotations

from proxy.redaction import Redactor

SECRET = "sk-teacher-secret-456"


def test_every_secret_is_replaced_and_short_ones_are_reported() -> None:
    redactor = Redactor([SECRET, "admin-token-789", "abc", ""])
    assert redactor.too_short == ["abc"]
    text = f"a {SECRET} b admin-token-789 c abc"
    assert redactor.text(text) == "a [redacted] b [redacted] c abc"
    assert redactor.bytes(text.encode()) == b"a [redacted] b [redacted] c abc"


def test_a_secret_split_at_any_byte_of_a_stream_is_replaced() -> None:
    redactor = Redactor([SECRET, "sk-teacher-other-000"])
    data = f'data: {{"content": "key {SECRET} and sk-teacher sk- end"}}\n\n'.encode()
    expected = redactor.bytes(data)
    for cut in range(1, len(data)):
        for second in range(cut, len(data)):
            stream = redactor.stream()
            out = stream.feed(data[:cut]) + stream.feed(data[cut:second])
            out += stream.feed(data[second:]) + stream.flush()
            assert out == expected, (cut, second)


def test_ordinary_text_is_not_held_back() -> None:
    stream = Redactor([SECRET]).stream()
    assert stream.feed(b"data: hello world\n\n") == b"data: hello world\n\n"
    assert stream.feed(b"ends with sk-te") == b"ends with "  # could be the secret's start
    assert stream.feed(b"a party") == b"sk-tea party"  # it was not
    assert stream.flush() == b""
