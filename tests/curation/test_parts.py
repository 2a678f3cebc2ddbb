"""The work table's parts: signatures read straight from Arrow buffers, links for the reservoir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curation.groups import _matrix
from curation.parts import link_parts, part_files, start


def test_signatures_come_back_whole_from_sliced_and_chunked_columns() -> None:
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(9, 16), dtype=np.uint32)
    column = pa.array([row.tobytes() for row in sig], pa.binary())
    assert (_matrix(column, 16) == sig).all()
    assert (_matrix(column.slice(3, 4), 16) == sig[3:7]).all()  # an offset into the buffers
    chunked = pa.chunked_array([column.slice(0, 5), column.slice(5)])
    assert (_matrix(chunked, 16) == sig).all()
    assert _matrix(pa.array([], pa.binary()), 16).shape == (0, 16)


def test_a_signature_of_the_wrong_width_is_refused() -> None:
    column = pa.array([b"\0" * 64, b"\0" * 60], pa.binary())
    with pytest.raises(ValueError, match="not all num_perm slots wide"):
        _matrix(column, 16)


def test_linked_parts_are_the_same_files_and_the_empty_part_stays(tmp_path: Path) -> None:
    source, target = tmp_path / "run", tmp_path / "state"
    start(source)
    (source / "part-00000000000000000000.parquet").write_bytes(b"rows")
    link_parts(source, target)
    linked = part_files(target)
    assert [p.name for p in linked] == ["part-00000000000000000000.parquet"]
    assert linked[0].stat().st_ino == (source / linked[0].name).stat().st_ino
