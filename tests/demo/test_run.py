"""The demo's pointer to the console: its address, and the admin token in an owner-only file."""

from __future__ import annotations

import stat
from pathlib import Path

from demo.run import console_line


def test_console_line_names_the_address_and_keeps_the_token_off_the_terminal(
    tmp_path: Path,
) -> None:
    line = console_line("http://127.0.0.1:8123", "s3cret-admin-token", tmp_path)
    assert "http://127.0.0.1:8123/ui/" in line and "s3cret-admin-token" not in line
    token_file = tmp_path / "console-token"
    assert str(token_file) in line
    assert token_file.read_text().strip() == "s3cret-admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
