from __future__ import annotations

from typing import Any

import pytest
import torch

from retrain.tiny_base import pretraining_texts, train_tokenizer
from tests.retrain.triage_task import make_rows


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Two shared cores: more threads are slower (FINDINGS), and other suites run beside us.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def triage_rows() -> list[dict[str, Any]]:
    return make_rows(300, seed=1)


@pytest.fixture(scope="session")
def tokenizer(triage_rows: list[dict[str, Any]]) -> Any:
    return train_tokenizer(pretraining_texts(triage_rows), vocab_size=400)
