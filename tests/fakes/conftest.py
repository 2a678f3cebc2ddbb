"""The official clients, pointed straight at the fake teacher (no proxy between)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes.teacher import FakeTeacher

# One transport per SDK for the whole session: building one loads the CA bundle (~0.1 s a
# test otherwise). The SDK clients are not closed, as that would close the shared transport.


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with openai.DefaultHttpxClient() as client:
        yield client


@pytest.fixture(scope="session")
def anthropic_http() -> Iterator[object]:
    # Its own kind: anthropic-python 2.x brings a transport package of its own.
    with anthropic.DefaultHttpxClient() as client:
        yield client


@pytest.fixture
def openai_client(teacher: FakeTeacher, http: httpx.Client) -> openai.OpenAI:
    # No retries: a test that sees an error sees the fake's first answer, not a later one.
    return openai.OpenAI(
        base_url=teacher.base_url, api_key="sk-test", max_retries=0, http_client=http
    )


@pytest.fixture
def anthropic_client(teacher: FakeTeacher, anthropic_http: object) -> anthropic.Anthropic:
    # anthropic-python appends /v1/messages to its base URL: the server's root.
    root = f"http://{teacher.host}:{teacher.port}"
    return anthropic.Anthropic(
        base_url=root, api_key="sk-ant-test", max_retries=0, http_client=anthropic_http
    )
