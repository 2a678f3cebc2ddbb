"""Embeddings on the fake teacher, through openai-python's `client.embeddings`."""

from __future__ import annotations

import json
import math

import openai
import pytest
from openai.types import CreateEmbeddingResponse

from tests.fakes.teacher import FakeTeacher


def floats(client: openai.OpenAI, text: str) -> list[float]:
    return (
        client.embeddings.create(model="e", input=text, encoding_format="float").data[0].embedding
    )


def test_float_vectors_are_deterministic_unit_vectors(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    raw = openai_client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float"
    )
    data = json.loads(raw.text)
    CreateEmbeddingResponse.model_validate(data)
    assert (data["object"], data["model"]) == ("list", "text-embedding-3-small")  # echoed
    assert data["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    (item,) = data["data"]
    assert (item["object"], item["index"], len(item["embedding"])) == ("embedding", 0, 8)
    assert math.isclose(math.fsum(x * x for x in item["embedding"]), 1.0, rel_tol=1e-6)
    assert floats(openai_client, "hello world") == item["embedding"]
    assert floats(openai_client, "hello there") != item["embedding"]
    assert teacher.received[-1].body["encoding_format"] == "float"


def test_base64_decodes_to_the_same_floats(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    decoded = openai_client.embeddings.create(model="e", input="hello world")  # SDK: base64
    assert teacher.received[-1].body["encoding_format"] == "base64"
    raw = openai_client.embeddings.with_raw_response.create(
        model="e", input="hello world", encoding_format="base64"
    )
    assert isinstance(json.loads(raw.text)["data"][0]["embedding"], str)
    assert decoded.data[0].embedding == floats(openai_client, "hello world")


def test_lists_and_token_arrays_embed_one_vector_each(openai_client: openai.OpenAI) -> None:
    texts = openai_client.embeddings.create(model="e", input=["a", "b c"], encoding_format="float")
    assert [d.index for d in texts.data] == [0, 1]
    assert texts.data[0].embedding == floats(openai_client, "a")
    assert texts.usage.prompt_tokens == 3
    tokens = openai_client.embeddings.create(model="e", input=[1, 2, 3])
    assert len(tokens.data) == 1 and tokens.usage.prompt_tokens == 3
    batches = openai_client.embeddings.create(model="e", input=[[1, 2], [3]])
    assert len(batches.data) == 2 and batches.data[0].embedding != batches.data[1].embedding


def test_dimensions_sets_the_length(openai_client: openai.OpenAI) -> None:
    short = openai_client.embeddings.create(model="e", input="hi", dimensions=4)
    assert len(short.data[0].embedding) == 4


def test_a_missing_input_is_a_bad_request(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.post("/embeddings", body={"model": "e"}, cast_to=CreateEmbeddingResponse)
    assert refused.value.param == "input"
