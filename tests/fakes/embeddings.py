"""`/v1/embeddings` of the fake teacher: deterministic vectors, as floats or base64.

Each input (a string, a token array, or a list of either) gets a unit vector drawn from a
generator seeded by a hash of the input, `dimensions` long (8 by default), so that the same
text always embeds the same and different texts differ. Values are float32, the API's own
precision: `encoding_format: "base64"` is those float32s little-endian, and decodes to
exactly the floats the `float` format sends. openai-python asks for base64 unless told.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

from tests.fakes.answers import Voice, count_tokens, finished
from tests.fakes.errors import ApiError
from tests.fakes.wire import Reply

DIMENSIONS = 8


def create(voice: Voice, payload: dict[str, Any]) -> Reply:
    inputs = embedding_inputs(payload)
    dims = payload.get("dimensions") or DIMENSIONS
    if not isinstance(dims, int) or dims < 1:
        raise ApiError(400, "'dimensions' must be a positive integer.", param="dimensions")
    as_base64 = payload.get("encoding_format") == "base64"
    data = []
    for index, value in enumerate(inputs):
        floats = vector(value, dims)
        encoded: Any = packed(floats) if as_base64 else floats
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(v) if isinstance(v, list) else count_tokens(v) for v in inputs)
    answer = {
        "object": "list",
        "data": data,
        "model": payload.get("model") or voice.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Reply(body=finished(voice, answer))


def embedding_inputs(payload: dict[str, Any]) -> list[str | list[int]]:
    raw = payload.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(v, str | list) for v in raw):
        return raw
    raise ApiError(
        400,
        "'input' must be a string, an array of strings, or an array of token arrays.",
        param="input",
    )


def vector(value: str | list[int], dims: int) -> list[float]:
    key = value if isinstance(value, str) else "tokens:" + ",".join(map(str, value))
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    # Round through float32 so that the float and base64 formats carry the same numbers.
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw))))


def packed(floats: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
