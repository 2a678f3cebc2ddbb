from __future__ import annotations

import json

import pytest

from curation.scrub import Scrubber, iban_valid, luhn_valid, scrub_pairs
from curation.settings import CurationSettings
from tests.curation.logged_rows import make_pair

VALID_CARD = "4111 1111 1111 1111"
INVALID_CARD = "4111 1111 1111 1112"


def scrub(text: str) -> str:
    return Scrubber().text(text)


def test_luhn_and_iban_checks() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid(
        "GB82 WEST 1234 5698 7654 33"
    )


def test_a_card_number_passing_luhn_is_masked_and_one_failing_stays() -> None:
    assert scrub(f"card {VALID_CARD} ok") == "card <CARD_1> ok"
    assert scrub(f"order {INVALID_CARD} ok") == f"order {INVALID_CARD} ok"
    assert scrub("card 4111-1111-1111-1111") == "card <CARD_1>"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail me at jane.doe+x@example.co.uk please", "EMAIL"),
        ("call +1 415 555 0132 now", "PHONE"),
        ("call (415) 555-0132 now", "PHONE"),
        ("iban GB82 WEST 1234 5698 7654 32 thanks", "IBAN"),
        ("iban DE89370400440532013000 thanks", "IBAN"),
        ("from 192.168.10.24 today", "IP"),
        ("from 2001:db8:85a3::8a2e:370:7334 today", "IP"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234 here", "API_KEY"),
        ("key AKIAIOSFODNN7EXAMPLE here", "API_KEY"),
        ("ssn 123-45-6789 here", "NATIONAL_ID"),
        ("nino AB 12 34 56 C here", "NATIONAL_ID"),
    ],
)
def test_each_kind_is_masked(text: str, kind: str) -> None:
    out = scrub(text)
    assert f"<{kind}_1>" in out
    assert out.split()[0] == text.split()[0] and out.split()[-1] == text.split()[-1]


def test_jwt_and_bearer_tokens() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
        ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert scrub(f"token {jwt} end") == "token <JWT_1> end"
    assert (
        scrub("Authorization: Bearer abcdef0123456789abcdef") == "Authorization: Bearer <API_KEY_1>"
    )


@pytest.mark.parametrize(
    "text",
    ["version 1.2.3 released", "on 2024-01-15 at 12:30:45", "order #12345", "total 1,234.50 EUR"],
)
def test_ordinary_numbers_stay(text: str) -> None:
    assert scrub(text) == text


def test_placeholders_are_stable_within_a_conversation() -> None:
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "send", "arguments": json.dumps({"to": "bob@example.com"})},
    }
    pair = make_pair(
        "Write to bob@example.com and alice@example.com",
        answer={"role": "assistant", "content": "Done: bob@example.com", "tool_calls": [call]},
        teacher_logprobs="[...]",
    )
    kept, report = scrub_pairs([pair], CurationSettings())
    assert kept[0].messages[0]["content"] == "Write to <EMAIL_1> and <EMAIL_2>"
    assert kept[0].answer is not None
    assert kept[0].answer["content"] == "Done: <EMAIL_1>"
    assert json.loads(kept[0].answer["tool_calls"][0]["function"]["arguments"]) == {
        "to": "<EMAIL_1>"
    }
    assert kept[0].teacher_logprobs is None  # they would spell out the address
    assert report.changed == {"email": 1}


def test_numbering_restarts_in_each_conversation() -> None:
    pairs = [make_pair("a@example.com"), make_pair("b@example.com")]
    kept, _ = scrub_pairs(pairs, CurationSettings())
    assert [p.messages[0]["content"] for p in kept] == ["<EMAIL_1>", "<EMAIL_1>"]


def test_content_parts_are_scrubbed() -> None:
    pair = make_pair("x")
    pair.messages = [{"role": "user", "content": [{"type": "text", "text": "ip 10.0.0.1"}]}]
    kept, _ = scrub_pairs([pair], CurationSettings())
    assert kept[0].messages[0]["content"][0]["text"] == "ip <IP_1>"


def test_drop_mode_drops_rows_with_findings_and_off_keeps_text() -> None:
    pairs = [make_pair("mail a@example.com"), make_pair("nothing here")]
    kept, report = scrub_pairs(pairs, CurationSettings(scrub="drop"))
    assert [p.messages[0]["content"] for p in kept] == ["nothing here"]
    assert report.dropped == {"contains_email": 1}
    pairs = [make_pair("mail a@example.com")]
    kept, _ = scrub_pairs(pairs, CurationSettings(scrub="off"))
    assert kept[0].messages[0]["content"] == "mail a@example.com"
