"""A full disk under the logbook: answers keep flowing, readiness turns false, and once space
returns every answered row is written. A real tmpfs of a few MB, mounted by the test (root)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from logbook.segments import open_segments
from logbook.settings import LogbookSettings
from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (run as root, as CI does)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def ask(proxy: RunningProxy, text: str, stream: bool = False) -> str:
    body = {"model": "triage", "stream": stream, "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{proxy.base_url}/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.headers["x-apprentice-request-id"]


def until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_full_disk_costs_no_answered_row(small_disk: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(small_disk / "data", teacher)
    answered = []
    with RunningProxy(config) as proxy:
        answered += [ask(proxy, f"before {i}") for i in range(20)]
        filler = fill(small_disk)
        answered += [ask(proxy, f"while full {i}", stream=i % 2 == 0) for i in range(60)]

        def degraded() -> bool:
            ready = httpx.get(f"{proxy.url}/readyz")
            return ready.status_code == 503 and "failing" in ready.json().get("reason", "")

        until(degraded, "readiness to say the logbook's writes are failing")
        metrics = httpx.get(f"{proxy.url}/metrics").text
        assert "apprentice_capture_degraded 1.0" in metrics
        filler.unlink()  # space returns
        until(lambda: httpx.get(f"{proxy.url}/readyz").status_code == 200, "readiness again")
        answered += [ask(proxy, f"after {i}") for i in range(10)]
    con = open_segments(config.data_dir)
    logged = {r[0] for r in con.execute("SELECT request_id FROM requests").fetchall()}
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered rows lost"


def test_shutdown_on_a_full_disk_keeps_what_it_journaled_for_the_next_start(
    small_disk: Path, teacher: FakeTeacher
) -> None:
    # The writer commits once a minute: at the stop these rows are in the journal only.
    slow = LogbookSettings(flush_interval_ms=60_000, seal_interval_s=3600)
    config = proxy_config(small_disk / "data", teacher).model_copy(update={"logbook": slow})
    with RunningProxy(config) as proxy:
        first = [ask(proxy, f"journaled {i}") for i in range(5)]
        reserve = small_disk / "reserve"
        reserve.write_bytes(b"\0" * (2 << 20))  # kept back, to be freed after the stop
        filler = fill(small_disk)
        proxy.stop()  # the last flush fails: the rows stay in the journal
    filler.unlink()
    reserve.unlink()
    with RunningProxy(config):
        pass  # the next start replays the journal
    con = open_segments(config.data_dir)
    logged = {r[0] for r in con.execute("SELECT request_id FROM requests").fetchall()}
    assert set(first) <= logged


def test_a_read_only_store_is_a_clear_seal_error_and_readiness_says_why(
    small_disk: Path, tmp_path: Path, teacher: FakeTeacher
) -> None:
    from store.settings import StoreSettings
    from tests.conftest import ADMIN_TOKEN

    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    store = StoreSettings(url=str(small_disk))  # the shared store on its own file system
    config = proxy_config(tmp_path / "data", teacher).model_copy(update={"store": store})
    with RunningProxy(config) as proxy:
        answered = [ask(proxy, f"kept {i}") for i in range(3)]
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        try:
            refused = httpx.post(f"{proxy.url}/admin/seal", headers=admin)
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]  # the error shape, not a bare 500
            assert error["code"] == "seal_failed" and "Read-only file system" in error["message"]
            ready = httpx.get(f"{proxy.url}/readyz")
            assert ready.status_code == 503 and "sealing into" in ready.json()["reason"]
            assert "Read-only file system" in ready.json()["reason"]
            job = httpx.post(f"{proxy.url}/admin/jobs/curate", headers=admin,
                             json={"route": "triage"})  # fmt: skip
            assert job.status_code == 503 and job.json()["error"]["code"] == "seal_failed"
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        sealed = httpx.post(f"{proxy.url}/admin/seal", headers=admin)
        assert sealed.status_code == 200 and sealed.json()["segments"][0]["rows"] == 3
        assert httpx.get(f"{proxy.url}/readyz").status_code == 200
    logged = {r[0] for r in open_segments(small_disk).execute("SELECT request_id FROM requests")
              .fetchall()}  # fmt: skip
    assert logged == set(answered)
