"""Shared fixtures: a fake teacher on loopback and the real proxy under uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from apprentice.config import Config, config_from_dict, offline_defaults

offline_defaults()  # as every entry point does, before litellm or transformers is imported

from apprentice.server import create_app  # noqa: E402
from monitoring.metrics import Metrics  # noqa: E402
from proxy.connections import guarded_protocol  # noqa: E402
from tests.fakes.teacher import FakeTeacher  # noqa: E402

CLIENT_KEY = "sk-client-test-key-123"
TEACHER_KEY = "sk-teacher-secret-456"
ADMIN_TOKEN = "admin-token-789"


@pytest.fixture
def teacher() -> Iterator[FakeTeacher]:
    with FakeTeacher() as fake:
        yield fake


def proxy_config(data_dir: Path, teacher: FakeTeacher, **route: Any) -> Config:
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"api_keys": [CLIENT_KEY], "admin_token": ADMIN_TOKEN, "port": 0},
        # Seal only when asked (and at shutdown), so tests decide when segments appear.
        "logbook": {"flush_interval_ms": 20, "seal_interval_s": 3600},
        "routes": [
            {
                "name": "triage",
                "teacher": "openai/fake-teacher-1",
                "teacher_api_base": teacher.base_url,
                "teacher_api_key": TEACHER_KEY,
                "retry_backoff_s": 0.01,
                "input_cost_per_mtok": 1.0,
                "output_cost_per_mtok": 2.0,
            }
            | route
        ],
    }
    return config_from_dict(raw)


class RunningProxy:
    """The real app under uvicorn on a free loopback port, in a background thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.app = create_app(config, self.metrics)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="on",
                loop="uvloop",
                http=guarded_protocol(config.server.header_timeout_s),
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="proxy", daemon=True)

    def __enter__(self) -> RunningProxy:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.005)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture
def proxy(tmp_path: Path, teacher: FakeTeacher) -> Iterator[RunningProxy]:
    with RunningProxy(proxy_config(tmp_path / "data", teacher)) as running:
        yield running
