"""The row-local stages on Ray Data (a local cluster) give what the one-node plan gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from curation.plan import run_plan
from curation.scan import Resources, Scope
from curation.settings import CurationSettings
from curation.split import PriorEval
from tests.curation.test_plan import _summary, logged

__all__ = ["logged"]  # the fixture, shared with test_plan


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_runs_the_row_local_stages_with_the_same_result(logged: Path, cluster: None) -> None:
    settings = CurationSettings(
        cluster_cap_share=0.3, cluster_cap_min_rows=10, eval_min_rows=5, novel_min_rows=4
    )
    prior = PriorEval(request_ids=frozenset({"req-3"}))
    local = run_plan(logged, Scope("r"), settings, prior, Resources(batch_rows=50))
    on_ray = run_plan(logged, Scope("r"), settings, prior, Resources(batch_rows=50, engine="ray"))
    assert _summary(on_ray) == _summary(local)
    assert {r.name: r for r in on_ray.reports}["select"].dropped["repeated_id"] == 1
