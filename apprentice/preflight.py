"""What would stop `apprentice serve` at start, checked before the server starts.

The same failures inside the app's lifespan reach the operator as uvicorn's traceback and
"Application startup failed"; checked here first, each is one sentence and exit status 2.
The server opens the same things again at start (a race with another process is still
refused there, only less politely).
"""

from __future__ import annotations

from pathlib import Path

from apprentice.config import Config
from cluster.control import open_control
from cluster.database import ControlUnavailable


class StartupError(Exception):
    """The server cannot start with this config; the message is one sentence."""


def preflight(config: Config, control_url: str) -> None:
    """Raise StartupError when data_dir, the logbook or the control plane cannot be used."""
    _data_dir(config.data_dir)
    _logbook_free(config.data_dir / "apprentice.duckdb")
    try:
        open_control(control_url, "preflight").close()
    except ControlUnavailable as exc:
        raise StartupError(str(exc).removesuffix("; the next call reconnects.")) from None


def _data_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise StartupError(
            f"data_dir {path} is a file, not a directory; point data_dir at a directory "
            "(it is created when missing)."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".apprentice-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"data_dir {path} cannot be written ({exc.strerror or exc}); give this user a "
            "writable directory."
        ) from None


def _logbook_free(path: Path) -> None:
    """Refuse when another process holds the logbook (DuckDB allows one writing process)."""
    if not path.exists():
        return
    import duckdb

    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StartupError(
                f"The logbook {path} is open in another process (another `apprentice serve` "
                "on the same data_dir); stop it first, or give this server its own data_dir."
            ) from None
    except duckdb.Error:
        return  # a damaged file is the logbook's to recover or quarantine at start
