"""Stored responses and files belong to the client key that created them: another key gets a
404 for them (GET, DELETE, input items, content) and does not see them in a list, although the
teacher behind the proxy keeps every object of its one account together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import SecretStr

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

OTHER_KEY = "sk-client-other-key-987"


@pytest.fixture
def proxy(tmp_path: Path, teacher: FakeTeacher) -> Iterator[RunningProxy]:
    config = proxy_config(tmp_path / "data", teacher)
    keys = [SecretStr(CLIENT_KEY), SecretStr(OTHER_KEY)]
    server = config.server.model_copy(update={"api_keys": keys})
    with RunningProxy(config.model_copy(update={"server": server})) as running:
        yield running


def client(proxy: RunningProxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=30)


def test_another_key_cannot_read_or_delete_a_stored_response(proxy: RunningProxy) -> None:
    owner, stranger = client(proxy, CLIENT_KEY), client(proxy, OTHER_KEY)
    created = owner.responses.create(model="triage", input="keep this")
    with owner.responses.stream(model="triage", input="and this") as stream:
        streamed = stream.get_final_response()
    for response_id in (created.id, streamed.id):
        with pytest.raises(openai.NotFoundError):
            stranger.responses.retrieve(response_id)
        with pytest.raises(openai.NotFoundError):
            stranger.responses.delete(response_id)
        with pytest.raises(openai.NotFoundError):
            stranger.responses.input_items.list(response_id)
        assert owner.responses.retrieve(response_id).id == response_id  # still there
    owner.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(created.id)


def test_another_key_cannot_see_list_read_or_delete_a_file(proxy: RunningProxy) -> None:
    owner, stranger = client(proxy, CLIENT_KEY), client(proxy, OTHER_KEY)
    mine = owner.files.create(file=("train.jsonl", b'{"a": 1}\n'), purpose="fine-tune")
    theirs = stranger.files.create(file=("other.jsonl", b'{"b": 2}\n'), purpose="fine-tune")
    assert [f.id for f in owner.files.list()] == [mine.id]
    assert [f.id for f in stranger.files.list()] == [theirs.id]
    with pytest.raises(openai.NotFoundError):
        stranger.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        stranger.files.delete(mine.id)
    content = httpx.get(f"{proxy.base_url}/files/{mine.id}/content",
                        headers={"authorization": f"Bearer {OTHER_KEY}"})  # fmt: skip
    assert content.status_code == 404 and content.json()["error"]["code"] == "not_found"
    assert owner.files.retrieve(mine.id).filename == "train.jsonl"
    assert owner.files.delete(mine.id).deleted
