"""A real Prometheus on loopback, with the shipped scrape config and rules, scraping apprentice
metrics: every dashboard panel and every rule expression must be accepted by its query API.

Two scrape targets: a stand-in that exports every metric of `Metrics` with samples (so each
query must also return data), and the real `apprentice serve` behind a fake teacher (so the
queries are checked against what the proxy actually exports under traffic).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from monitoring.docs import series_names
from monitoring.metrics import Metrics
from monitoring.queries import PROMETHEUS_DIR, Query, dashboard_queries, rule_queries

ROUTE = "r"
DEADLINE_S = 60.0
# Label values for the stand-in exporter: both sides of every comparison the rules make.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "route": (ROUTE,),
    "served_by": ("teacher", "student"),
    "outcome": ("ok", "error"),
    "verdict": ("agree", "disagree"),
    "level": ("warn", "act"),
    "source": ("predicted", "live"),
}


def binary(name: str) -> str:
    """A Prometheus binary; a skip outside CI, a failure in CI (where it must be installed)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: `sudo apt-get install prometheus` (Debian) runs this test"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Wait until `check()` holds, or fail saying what never happened."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Prometheus with the shipped config pointed at `target`, scraping every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _ok(f"{base}/-/ready") or proc.poll() is not None, "prometheus to start")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def query(base: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


def has_data(base: str, expr: str) -> bool:
    body = query(base, expr)
    return body["status"] == "success" and bool(body["data"]["result"])


def shipped_queries() -> list[Query]:
    return [*dashboard_queries({"route": ROUTE}), *rule_queries()]


def check_all(base: str, *, require_data: bool) -> list[str]:
    """Fail on any query Prometheus rejects; return (or fail on) panels and recording rules
    without data."""
    rejected, empty = [], []
    for q in shipped_queries():
        body = query(base, q.expr)
        if body["status"] != "success":
            rejected.append(f"{q.source}: {body.get('error')}")
        elif not body["data"]["result"] and not q.source.startswith("alert_rules.yml"):
            # an alert expression without data is an alert that is not firing: fine
            empty.append(q.source)
    assert not rejected, "Prometheus rejected:\n" + "\n".join(rejected)
    if require_data:
        assert not empty, "no data for:\n" + "\n".join(empty)
    return empty


def bump(metrics: Metrics) -> None:
    """Add one sample to every series of every metric, so rates and increases move."""
    for wrapper in vars(metrics).values():
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        names = wrapper._labelnames
        for values in itertools.product(*(LABEL_VALUES.get(n, ("x",)) for n in names)):
            child = wrapper.labels(*values) if names else wrapper
            if isinstance(child, Counter):
                child.inc()
            elif isinstance(child, Histogram):
                child.observe(0.3)
            elif isinstance(child, Gauge):
                child.set(time.time() if "timestamp" in wrapper._name else 0.5)
    metrics.set_canary_state(ROUTE, "canary")


@contextmanager
def stand_in_exporter() -> Iterator[str]:
    """An HTTP /metrics serving a `Metrics` whose every series grows on each scrape."""
    metrics = Metrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            bump(metrics)
            body = metrics.render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


def test_every_query_returns_data_from_a_full_exporter(tmp_path: Path) -> None:
    with stand_in_exporter() as target, prometheus(tmp_path, target) as base:
        # the last recording rules to fill in need two scrapes inside their window
        poll(
            lambda: (
                has_data(base, "route:apprentice_fallbacks_per_student_attempts:ratio_rate5m")
                and has_data(base, "route:apprentice_teacher_cost_avoided_usd:increase1h")
            ),
            "recording rules over the stand-in's metrics",
        )
        check_all(base, require_data=True)


@contextmanager
def apprentice_server(tmp_path: Path, teacher_url: str) -> Iterator[str]:
    """`apprentice serve` in a subprocess on a free port, ready to take requests."""
    port = free_port()
    config = tmp_path / "apprentice.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\napi_keys = []\n'
        f'[[routes]]\nname = "{ROUTE}"\nteacher = "openai/fake-teacher-1"\n'
        f'teacher_api_base = "{teacher_url}"\nteacher_api_key = "x"\n'
    )
    log = (tmp_path / "apprentice.log").open("wb")
    command = [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(config)]
    proc = subprocess.Popen([*command, "--log-level", "warning"], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _ok(f"{base}/readyz") or proc.poll() is not None, "apprentice to start")
        assert proc.poll() is None, (tmp_path / "apprentice.log").read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def send_traffic(base: str, requests: int = 10) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(requests):
            body = {
                "model": ROUTE,
                "messages": [{"role": "user", "content": f"hello {i}"}],
                "stream": i % 2 == 1,
            }
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text


def exported_names(base: str) -> set[str]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_query_is_valid_against_real_apprentice(tmp_path: Path) -> None:
    if not (Path(__file__).parents[2] / "apprentice" / "cli.py").is_file():
        pytest.skip("apprentice.cli is not built yet")
    from tests.fakes.teacher import FakeTeacher

    with FakeTeacher() as teacher, apprentice_server(tmp_path, teacher.base_url) as proxy:
        send_traffic(proxy)
        names = exported_names(proxy)
        assert names <= series_names(), f"/metrics has undeclared metrics {names - series_names()}"
        with prometheus(tmp_path, proxy.removeprefix("http://")) as base:
            poll(lambda: has_data(base, "route:apprentice_requests:rate5m"), "a recorded rate")
            send_traffic(proxy)
            poll(
                lambda: has_data(base, f'apprentice_requests_total{{route="{ROUTE}"}} >= 20'),
                "the second round of traffic to be scraped",
            )
            empty = check_all(base, require_data=False)
    # teacher-only traffic must light up every overview panel; the rollout dashboard fills in
    # once a student, the canary, drift and retraining run
    assert not [s for s in empty if s.startswith("overview.json")], empty
