"""The canary loop on a real control plane (SQLite) and registry, with the proxy's traffic
counters and a fake clock: discovery, judgement, drift on its own interval, and the students'
statuses it writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from canary.loop import CanaryLoop, StudentRefused
from canary.settings import CanarySettings
from cluster.control import open_control
from monitoring.drift import build_reference
from monitoring.drift_monitor import DriftMonitor
from monitoring.metrics import Metrics
from monitoring.settings import DriftSettings
from proxy.routing import Traffic
from retrain import students
from tests.canary.test_controller import FakeClock

REFERENCE = [f"please summarise ticket {i} about billing" + " now" * (i % 4) for i in range(200)]
FAST = CanarySettings(
    auto_canary=True, steps=[50], interval_s=10, min_requests=5, min_shadow_pairs=5
)


def register(data_dir: Path, version: int, status: str = "candidate", dataset: int = 1) -> None:
    """A published student (the loop never loads one) trained on dataset `dataset`."""
    folder = students.student_dir(data_dir, "r", version)
    folder.mkdir(parents=True)
    manifest = {"status": status, "dataset_version": dataset, "base": "tiny",
                "metrics": {"student": {"exact_match": 0.95}}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ds = data_dir / "datasets" / "r" / f"v{dataset}"
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "manifest.json").write_text(json.dumps({"reference": build_reference(REFERENCE)}))


def statuses(data_dir: Path) -> dict[str, str]:
    return {s.name: s.status for s in students.list_students(data_dir, "r")}


class Harness:
    def __init__(self, data_dir: Path, canary: CanarySettings, drift: DriftSettings) -> None:
        self.data_dir, self.clock = data_dir, FakeClock()
        self.metrics = Metrics(CollectorRegistry())
        self.control = open_control(str(data_dir / "control.sqlite3"), "test")
        self.traffic = Traffic(["r"])
        self.drift = DriftMonitor(self.metrics, {"r": drift}, clock=self.clock)
        self.retrains: list[str] = []
        self.loop = CanaryLoop(
            data_dir, {"r": canary}, control=self.control, drift=self.drift,
            traffic=self.traffic, metrics=self.metrics, on_retrain=self.retrains.append,
            clock=self.clock,
        )  # fmt: skip

    def good_interval(self) -> None:
        """Enough student traffic, as good as the teacher's, and agreeing shadow pairs."""
        counters = self.traffic["r"]
        for _ in range(10):
            counters.served(True, True, 0.01)
            counters.served(False, True, 0.02)
            counters.compared("agree")

    async def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        await self.loop.tick()

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, FAST, DriftSettings(interval_s=30, min_prompts=20, window_size=50))
    await h.loop.open()
    yield h
    h.control.close()


async def test_a_candidate_is_discovered_judged_promoted_and_the_registry_says_so(
    harness: Harness,
) -> None:
    h = harness
    register(h.data_dir, 1)
    await h.tick()
    assert h.loop.controllers["r"].state == "shadow"
    assert statuses(h.data_dir) == {"v1": "shadow"}
    assert h.gauge("apprentice_student_info", route="r", version="v1", base="tiny") == 1.0
    for state in ("canary", "promoted"):
        h.good_interval()
        await h.tick(10)
        assert h.loop.controllers["r"].state == state
        assert statuses(h.data_dir)["v1"] == state
    assert students.current_student(h.data_dir, "r").version == 1  # type: ignore[union-attr]

    register(h.data_dir, 2, dataset=2)  # the next candidate replaces v1 once it is promoted
    await h.tick()
    assert statuses(h.data_dir) == {"v1": "promoted", "v2": "shadow"}
    for _ in range(2):
        h.good_interval()
        await h.tick(10)
    assert statuses(h.data_dir) == {"v1": "retired", "v2": "promoted"}
    assert students.current_student(h.data_dir, "r").version == 2  # type: ignore[union-attr]


async def test_a_failed_check_rolls_back_the_candidate_and_the_student_it_served_beside(
    harness: Harness,
) -> None:
    h = harness
    register(h.data_dir, 1)
    await h.tick()
    for _ in range(2):
        h.good_interval()
        await h.tick(10)
    register(h.data_dir, 2)
    await h.tick()
    await h.loop.set_weight("r", "v2", 50)  # v2 serves half, v1 the rest (stored at once)
    assert statuses(h.data_dir) == {"v1": "promoted", "v2": "canary"}
    counters = h.traffic["r"]
    for _ in range(10):
        counters.served(True, True, 0.01)
        counters.served(False, True, 0.02)
        counters.compared("disagree")
    await h.tick(10)
    assert h.loop.controllers["r"].state == "rolled_back"
    assert statuses(h.data_dir) == {"v1": "rolled_back", "v2": "rolled_back"}
    assert students.current_student(h.data_dir, "r") is None
    assert h.gauge("apprentice_student_info", route="r", version="v2", base="tiny") is None


async def test_drift_is_scored_on_its_own_interval_and_acts_on_a_promoted_student(
    tmp_path: Path,
) -> None:
    drift = DriftSettings(interval_s=5, min_prompts=20, window_size=50, trigger_retrain=True)
    slow_canary = FAST.model_copy(update={"interval_s": 1000})
    h = Harness(tmp_path, slow_canary, drift)
    await h.loop.open()
    register(tmp_path, 1)
    await h.tick()
    h.loop.controllers["r"].promote()
    await h.loop.persist()
    for prompt in REFERENCE[:40]:
        h.drift.observe_prompt("r", [{"role": "user", "content": prompt}])
    await h.tick(5)
    first_run = h.gauge("apprentice_drift_last_run_timestamp_seconds", route="r")
    assert first_run == h.clock.now  # scored although no canary interval has passed
    assert h.loop.controllers["r"].state == "promoted"  # the traffic looks like its data
    for _ in range(50):
        h.drift.observe_prompt("r", [{"role": "user", "content": "traduire en allemand svp"}])
    await h.tick(2)
    assert h.gauge("apprentice_drift_last_run_timestamp_seconds", route="r") == first_run
    await h.tick(3)  # the drift interval has passed: scored, past act, off traffic
    ctl = h.loop.controllers["r"]
    assert ctl.state == "rolled_back" and ctl.history[-1].reason == "drift"
    assert statuses(tmp_path) == {"v1": "rolled_back"}
    assert h.retrains == ["r"]
    await h.tick(5)
    assert h.retrains == ["r"]  # asked once per reference, not once per run
    h.control.close()


async def test_manual_controls_refuse_students_that_cannot_serve(harness: Harness) -> None:
    register(harness.data_dir, 1, status="rejected")
    with pytest.raises(StudentRefused, match="rejected by its gate") as refused:
        await harness.loop.start("r", "v1")
    assert refused.value.code == "student_rejected"
    with pytest.raises(StudentRefused, match="no registered student v7") as missing:
        await harness.loop.set_weight("r", "v7", 10)
    assert missing.value.code == "student_not_found"
    assert harness.loop.controllers["r"].state == "idle"


async def test_state_restored_at_open_is_written_to_a_registry_that_lacks_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, FAST, DriftSettings())
    await h.loop.open()
    register(tmp_path, 1)
    await h.tick()
    h.loop.controllers["r"].promote()
    await h.loop.persist()
    h.control.close()
    (students.student_dir(tmp_path, "r", 1) / "status.json").unlink()  # an older data_dir
    assert statuses(tmp_path) == {"v1": "candidate"}

    again = Harness(tmp_path, FAST, DriftSettings())
    await again.loop.open()
    assert again.loop.controllers["r"].state == "promoted"
    assert statuses(tmp_path) == {"v1": "promoted"}
    again.control.close()


async def test_a_calibrated_student_defers_without_rollback_and_its_prediction_is_exported(
    harness: Harness,
) -> None:
    h = harness
    register(h.data_dir, 1)
    cascade = {"signal": "min_logprob", "threshold": -0.2, "coverage": 0.6, "agreement": 0.98}
    eval_json = students.student_dir(h.data_dir, "r", 1) / "eval.json"
    eval_json.write_text(json.dumps({"cascade": cascade}))
    await h.tick()
    labels = {"route": "r", "version": "v1"}
    assert h.gauge("apprentice_cascade_coverage_ratio", source="predicted", **labels) == 0.6
    assert h.gauge("apprentice_cascade_agreement_ratio", source="predicted", **labels) == 0.98
    for state in ("canary", "promoted"):
        h.good_interval()
        for _ in range(8):  # 8 of 18 answers deferred: by design, not a failure
            h.traffic["r"].fell_back("low_confidence")
        await h.tick(10)
        assert h.loop.controllers["r"].state == state
    register(h.data_dir, 2)  # without eval.json: no calibrated rule, deferrals are fallbacks
    await h.tick()
    h.good_interval()
    await h.tick(10)  # shadow: nothing served yet
    h.good_interval()
    for _ in range(8):
        h.traffic["r"].fell_back("low_confidence")
    await h.tick(10)
    assert h.loop.controllers["r"].state == "rolled_back"
    assert h.loop.controllers["r"].last_decision.reason.startswith("fallback ratio")  # type: ignore[union-attr]
