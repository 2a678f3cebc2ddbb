"""An incremental run (watermark plus reservoir) writes what a full run on the same data does."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curation.dataset import dataset_dir, read_manifest
from curation.job import STATE_DIR, run_curation
from curation.settings import CurationSettings
from tests.curation.logged_rows import feedback_row, write_segment
from tests.curation.test_plan import wide_traffic

SETTINGS = CurationSettings(
    cluster_cap_share=0.3, cluster_cap_min_rows=10, eval_min_rows=5, novel_min_rows=4
)


def _twins(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """Two stores after a first curation of the same first rows; the second has no state."""
    rows, feedback = wide_traffic()
    rows.pop()  # the replayed copy of rows[5]: a run past the watermark never meets one (below)
    # a verdict on a row not sealed yet would change the verdicts of its older copies (below)
    feedback = [f for f in feedback if f["request_id"] != "copy-a"]
    incremental = tmp_path / "incremental"
    write_segment(incremental, rows[:100], first_seq=1)
    write_segment(incremental, rows[100:200], first_seq=1000)
    write_segment(incremental, feedback, table="feedback", first_seq=1)
    assert run_curation(incremental, "r", SETTINGS).version == 1
    full = tmp_path / "full"
    shutil.copytree(incremental, full)
    shutil.rmtree(full / STATE_DIR)
    return incremental, full, rows[:200], rows[200:]


def _add(stores: tuple[Path, ...], rows: list[dict[str, Any]], **kwargs: Any) -> None:
    path = write_segment(stores[0], rows, **kwargs)
    for other in stores[1:]:
        target = other / path.relative_to(stores[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def _dataset(root: Path, version: int) -> dict[str, Any]:
    manifest = read_manifest(root, "r", version)
    folder = dataset_dir(root, "r", version)
    return {
        "train": pq.read_table(folder / "train.parquet").to_pylist(),
        "eval": pq.read_table(folder / "eval.parquet").to_pylist(),
        **{k: manifest[k] for k in ("counts", "stages", "novel", "clusters", "reference")},
        "rows_read": manifest["source"]["rows_read"],
        "skipped": manifest["skipped"],
    }


def test_a_run_reads_only_new_segments_and_equals_a_full_run(tmp_path: Path) -> None:
    incremental, full, _, rest = _twins(tmp_path)
    _add((incremental, full), rest, first_seq=5000)
    a = run_curation(incremental, "r", SETTINGS)
    b = run_curation(full, "r", SETTINGS)
    assert a.version == b.version == 2
    assert a.manifest is not None and b.manifest is not None
    assert a.manifest["source"]["read"]["segments_read"] == 1  # only the new one
    assert a.manifest["source"]["read"]["reservoir_rows"] > 0
    assert b.manifest["source"]["read"] == {"segments_read": 3, "reservoir_rows": 0}
    assert _dataset(incremental, 2) == _dataset(full, 2)


def test_a_replayed_row_makes_it_read_everything_again(tmp_path: Path) -> None:
    incremental, full, old, rest = _twins(tmp_path)
    replayed = dict(rest[0], request_id=old[7]["request_id"])
    _add((incremental, full), [*rest, replayed], first_seq=5000)
    a = run_curation(incremental, "r", SETTINGS)
    assert a.manifest is not None
    assert a.manifest["source"]["read"] == {"segments_read": 3, "reservoir_rows": 0}
    run_curation(full, "r", SETTINGS)
    assert _dataset(incremental, 2) == _dataset(full, 2)


def test_new_feedback_makes_it_read_everything_again(tmp_path: Path) -> None:
    incremental, full, old, rest = _twins(tmp_path)
    _add((incremental, full), rest, first_seq=5000)
    # a verdict on a row the first run read changes that row: the reservoir no longer holds
    _add(
        (incremental, full),
        [feedback_row(old[3]["request_id"], -1.0)],
        table="feedback",
        first_seq=90,
    )
    a = run_curation(incremental, "r", SETTINGS)
    run_curation(full, "r", SETTINGS)
    assert a.manifest is not None
    assert a.manifest["source"]["read"] == {"segments_read": 3, "reservoir_rows": 0}
    assert _dataset(incremental, 2) == _dataset(full, 2)
