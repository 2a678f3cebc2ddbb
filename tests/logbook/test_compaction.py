"""Compaction merges a day's small segments; readers see every row exactly once throughout."""

from __future__ import annotations

import json
import time
from pathlib import Path

from logbook.compaction import compact_route, replaced_by
from logbook.sealing import segment_path
from logbook.segments import open_segments, segment_files
from tests.curation.logged_rows import T0, request_row, write_segment

OTHER = "fedcba9876543210fedcba9876543210"  # a second replica's logbook


def _seal(root: Path, first: int, count: int, logbook: str | None = None) -> Path:
    rows = [request_row(f"prompt {first + i}", minute=first + i) for i in range(count)]
    path = write_segment(root, rows, first_seq=first)
    if logbook is not None:  # the same rows sealed by another replica's logbook
        other = segment_path(root, "requests", "r", T0.date(), first, first + count - 1, logbook)
        path.rename(other)
        return other
    return path


def _seen(root: Path) -> tuple[int, int]:
    """(rows, distinct request ids) a reader of the route sees."""
    con = open_segments(root, "r")
    try:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM requests"
        ).fetchall()[0]
    finally:
        con.close()
    return int(total), int(distinct)


def test_a_day_of_small_files_becomes_one_file_per_logbook(tmp_path: Path) -> None:
    small = [_seal(tmp_path, 1 + 10 * i, 10) for i in range(6)]
    small += [_seal(tmp_path, 1000 + 5 * i, 5, OTHER) for i in range(3)]
    assert _seen(tmp_path) == (75, 75)
    report = compact_route(tmp_path, "r")
    assert (report.merged, report.replaced, report.rows) == (2, 9, 75)
    listed = segment_files(tmp_path, "requests", "r")
    assert [p.name for p in listed] == [
        "part-0123456789ab-000000000001-000000000060.parquet",
        "part-fedcba987654-000000001000-000000001014.parquet",
    ]
    assert all(p.exists() for p in small)  # within the grace period a reader may still hold one
    assert _seen(tmp_path) == (75, 75)
    later = compact_route(tmp_path, "r", clock=lambda: time.time() + 7200)
    assert later.deleted == 9 and later.merged == 0
    assert not any(p.exists() for p in small)
    assert _seen(tmp_path) == (75, 75)


def test_new_seals_after_a_compaction_are_merged_into_it(tmp_path: Path) -> None:
    first = [_seal(tmp_path, 1 + 10 * i, 10) for i in range(3)]
    compact_route(tmp_path, "r")
    newer = [_seal(tmp_path, 31 + 10 * i, 10) for i in range(2)]
    assert _seen(tmp_path) == (50, 50)
    report = compact_route(tmp_path, "r")
    assert report.merged == 1 and report.rows == 50
    (merged,) = segment_files(tmp_path, "requests", "r")
    # it names the first merged file and, again, the files that one replaced: deleting them
    # in any order never lets a reader see a row twice
    assert {p.name for p in first + newer} < set(replaced_by(merged))
    assert _seen(tmp_path) == (50, 50)
    compact_route(tmp_path, "r", clock=lambda: time.time() + 7200)
    assert [p.name for p in merged.parent.glob("*.parquet")] == [merged.name]
    assert _seen(tmp_path) == (50, 50)


def test_a_crash_before_the_link_leaves_nothing_a_reader_sees(tmp_path: Path) -> None:
    for i in range(3):
        _seal(tmp_path, 1 + 10 * i, 10)
    day = segment_path(tmp_path, "requests", "r", T0.date(), 1, 1, "0" * 32).parent
    stale = day / ".compact-crashed.tmp"
    stale.write_bytes(b"half a parquet file")
    assert _seen(tmp_path) == (30, 30)
    compact_route(tmp_path, "r", clock=lambda: time.time() + 7200)
    assert not stale.exists()
    assert _seen(tmp_path) == (30, 30)


def test_one_file_or_files_from_before_identities_are_left_alone(tmp_path: Path) -> None:
    only = _seal(tmp_path, 1, 10)
    report = compact_route(tmp_path, "r")
    assert report.merged == 0 and only.exists()
    assert compact_route(tmp_path, "missing-route").merged == 0


def test_apprentice_compact_merges_and_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from apprentice.cli import app

    data = tmp_path / "data"
    for i in range(4):
        _seal(data, 1 + 10 * i, 10)
    toml = tmp_path / "a.toml"
    toml.write_text(f'data_dir = "{data}"\n[[routes]]\nname = "r"\nteacher = "openai/x"\n')
    result = CliRunner().invoke(app, ["compact", "--route", "r", "--config", str(toml), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["merged"], report["replaced"], report["rows"]) == (1, 4, 40)
    assert _seen(data) == (40, 40)
    unknown = CliRunner().invoke(app, ["compact", "--route", "nope", "--config", str(toml)])
    assert unknown.exit_code == 2
