"""A corrupt or foreign file among the segments: curate, export and stats leave it out and say
so in one sentence; the server moves it to quarantine/ at start (tests/logbook)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from apprentice.cli import app
from tests.curation.logged_rows import request_row, write_segment


def test_batch_commands_skip_an_unreadable_segment_and_say_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rows = [request_row(f"question number {i} about apples", f"answer {i}", minute=i,
                        session_hash=f"s{i}") for i in range(40)]  # fmt: skip
    good = write_segment(data_dir, rows)
    torn = good.with_name(good.name.removesuffix(".parquet") + "9.parquet")  # its own range
    torn.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # a copy cut in half
    config = tmp_path / "apprentice.toml"
    config.write_text(f'data_dir = "{data_dir}"\n[[routes]]\nname = "r"\nteacher = "openai/x"\n')
    runner = CliRunner()
    for args in (["stats", "--json"], ["export", "--route", "r"], ["curate", "--route", "r",
                                                                   "--json"]):  # fmt: skip
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == 0, (args, result.output)
        assert "skipped 1 unreadable segment file" in result.stderr, args
        assert torn.name in result.stderr and "Traceback" not in result.output
    stats = json.loads(runner.invoke(app, ["stats", "--json", "--config", str(config)]).stdout)
    assert stats["total"]["rows"] == 40 and len(stats["skipped_segments"]) == 1
