"""Fixtures shared by the student tests: one small real student, trained once per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from retrain.job import run_retrain
from retrain.settings import RetrainSettings
from tests.retrain.triage_task import make_rows, write_dataset

# Just enough training that answers look like JSON and usually end on EOS (~10 s on 1 thread).
QUICK = RetrainSettings(
    tiny_hidden_size=64,
    tiny_vocab_size=400,
    pretrain_steps=20,
    max_steps=160,
    warmup_steps=10,
    batch_size=16,
    learning_rate=1e-2,
    eval_every=1000,
    eval_sample=4,
    latency_samples=1,
    max_new_tokens=24,
    gate={"exact_match": 0.0},
)


@pytest.fixture(scope="session")
def student_data() -> Iterator[tuple[Path, int]]:
    """A data_dir holding a dataset and one registered student of route `triage`."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        rows = make_rows(208, seed=3)
        write_dataset(data_dir, "triage", 1, rows[:200], rows[200:])
        result = run_retrain(data_dir, "triage", QUICK, progress=False)
        yield data_dir, result.version


@pytest.fixture
def student_dir(student_data: tuple[Path, int], tmp_path: Path) -> Path:
    """A fresh data_dir for one test, holding a copy of the session's registered student
    (students/ only: no dataset, so no drift reference and no drift checks)."""
    source, _ = student_data
    data_dir = tmp_path / "data"
    shutil.copytree(source / "students", data_dir / "students")
    return data_dir
