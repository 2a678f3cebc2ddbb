"""The demo's sizes and timings, and the apprentice.toml it runs `serve` with.

`--quick` trains a smaller student on less traffic with the same phases. Every number here is
an ordinary config value a user could set; nothing in the server knows it is a demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from demo.teacher import SimulatedTeacher

ROUTE = "support-triage"  # the demo's one route


@dataclass(frozen=True)
class DemoPlan:
    quick: bool
    teacher_latency_s: float  # the simulated provider's answer time
    concurrency: int  # concurrent application clients
    batch: int  # requests per traffic batch (sessions re-drawn each batch)
    first_rows: int  # sealed rows before the first retrain is asked for
    asked_rows: int  # new rows a drift-triggered retrain waits for
    hidden: int  # tiny base size
    layers: int
    pretrain_steps: int
    max_steps: int
    interval_s: float  # canary analysis and drift interval
    collect_s: float  # deadlines per phase
    train_s: float
    canary_s: float
    drift_s: float
    tail_s: float  # traffic after the last promotion: at least this long...
    tail_requests: int  # ...and until the new student has answered this many (6 x tail_s at most)

    @property
    def stuck_after_s(self) -> float:
        """Past every phase's deadline with two retrains on top: the demo is stuck."""
        phases = self.collect_s + self.train_s + self.canary_s + self.drift_s
        return phases + 3 * self.train_s + self.canary_s + 6 * self.tail_s + 60


def plan_for(quick: bool) -> DemoPlan:
    if quick:
        return DemoPlan(
            quick=True, teacher_latency_s=0.05, concurrency=12, batch=60, first_rows=0,
            asked_rows=600, hidden=64, layers=2, pretrain_steps=50, max_steps=220,
            interval_s=2.0, collect_s=40, train_s=120, canary_s=60, drift_s=40, tail_s=4,
            tail_requests=500,
        )  # fmt: skip
    return DemoPlan(
        quick=False, teacher_latency_s=0.2, concurrency=16, batch=120, first_rows=0,
        asked_rows=2000, hidden=96, layers=2, pretrain_steps=100, max_steps=500,
        interval_s=4.0, collect_s=120, train_s=240, canary_s=120, drift_s=90, tail_s=15,
        tail_requests=1000,
    )  # fmt: skip


def demo_config(plan: DemoPlan, data_dir: Path, port: int, sim: SimulatedTeacher) -> str:
    """An apprentice.toml for the demo (keys come from the environment, as in production)."""
    return f"""# Written by `apprentice demo`; an ordinary config for `apprentice serve --config`.
data_dir = "{data_dir}"

[server]
host = "127.0.0.1"
port = {port}
api_keys = ["env:DEMO_CLIENT_KEY"]
admin_token = "env:DEMO_ADMIN_TOKEN"

[logbook]
seal_interval_s = 1.0

[[routes]]
name = "{ROUTE}"
teacher = "openai/sim-teacher-1"
teacher_api_base = "{sim.base_url}"
teacher_api_key = "env:DEMO_TEACHER_KEY"
input_cost_per_mtok = {sim.input_usd_per_mtok}
output_cost_per_mtok = {sim.output_usd_per_mtok}

[routes.retrain]
schedule = true
# the demo asks for the first run; drift asks for the second
min_new_rows = 1000000
asked_min_new_rows = {plan.asked_rows}
# Full fine-tuning of the tiny random-init base: it learns a changed task with replay, where a
# LoRA adapter on it could not (shared/FINDINGS.md). On a real base, keep the default "lora".
method = "full"
tiny_hidden_size = {plan.hidden}
tiny_layers = {plan.layers}
pretrain_steps = {plan.pretrain_steps}
max_steps = {plan.max_steps}
eval_every = {max(50, plan.max_steps // 4)}
max_new_tokens = 48             # triage answers are ~20 tokens; the untrained base rambles
# The novel eval slice (products and names held out of train) is a few dozen rows here and
# the student trains for seconds: a lower bar there, since its calibrated cascade sends the
# answers it is unsure of to the teacher anyway.
gate_novel = {{exact_match = 0.8}}

[routes.canary]
auto_canary = true
steps = [25, 50, 100]
interval_s = {plan.interval_s}
min_requests = 10
min_shadow_pairs = 10
holdout_share = 0.2             # at 100%, a fifth of requests still measure the student
min_agreement = 0.9
max_fallback_ratio = 0.25
max_latency_factor = 5.0

[routes.drift]
window_size = 300
min_prompts = 60
min_shadow_pairs = 20
interval_s = {plan.interval_s}
pause_canary = true
trigger_retrain = true
"""
