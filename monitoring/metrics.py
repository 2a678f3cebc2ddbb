"""Every Prometheus metric apprentice exports, declared once, with an explicit registry.

The server creates one `Metrics` in its lifespan and passes it down; tests create their own, so
no test sees another's counts. Labels are bounded: route, served_by, outcome, reason, state,
verdict, method, kind; never a request id or a key.

Under `serve --workers N` every worker writes its values to files in one folder
(prometheus_client's multiprocess mode) and /metrics, whichever worker answers it, reports the
sum of counters and histograms over all workers. Each gauge says how workers combine
(`multiprocess_mode`): a worker's own state is summed or maxed over the live workers; what the
leader decides (canary, drift, retrain) is the most recent value any live worker set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# LLM calls take from milliseconds (a cached student) to minutes (a long teacher answer).
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
    300.0, 600.0,
)  # fmt: skip
# Time to first token starts at a millisecond: students answer from memory on this host.
TTFT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
CANARY_STATES = ("idle", "shadow", "canary", "promoted", "paused", "rolled_back")


@dataclass
class Metrics:
    """The metrics of one apprentice process, all in one registry."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    # The folder of `serve --workers` (PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads
    # when it is imported): /metrics then reports every worker's values.
    multiprocess_dir: str | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self._failure_streaks: dict[str, int] = {}
        # Traffic
        self.requests = Counter(
            "apprentice_requests_total",
            "Chat completion requests answered, by route, who served them and outcome "
            "(ok, upstream_error, error, client_disconnected).",
            ["route", "served_by", "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "apprentice_request_duration_seconds",
            "Time from request received to last byte sent.",
            ["route", "served_by"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "apprentice_time_to_first_token_seconds",
            "Time from request received to the first byte of the answer.",
            ["route", "served_by"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "apprentice_tokens_total",
            "Tokens processed, by route, who served them and kind (prompt, completion).",
            ["route", "served_by", "kind"],
            registry=r,
        )
        self.teacher_cost = Counter(
            "apprentice_teacher_cost_usd_total",
            "What the teacher charged, from the price table (USD).",
            ["route"],
            registry=r,
        )
        self.teacher_cost_avoided = Counter(
            "apprentice_teacher_cost_avoided_usd_total",
            "What the teacher would have charged for requests students served (USD).",
            ["route"],
            registry=r,
        )
        self.teacher_retries = Counter(
            "apprentice_teacher_retries_total",
            "Teacher calls retried before the first byte, by reason (status code or connect).",
            ["route", "reason"],
            registry=r,
        )
        self.passthrough = Counter(
            "apprentice_passthrough_requests_total",
            "Calls passed through to a teacher as they are (embeddings, files, audio, ...), by "
            "route, endpoint family and outcome.",
            ["route", "endpoint", "outcome"],
            registry=r,
        )
        self.client_errors = Counter(
            "apprentice_client_errors_total",
            "Requests refused before reaching a model, by reason.",
            ["reason"],
            registry=r,
        )
        # Capture
        self.capture_queue_depth = Gauge(
            "apprentice_capture_queue_depth",
            "Rows waiting in memory for the logbook writer.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.capture_rows = Counter(
            "apprentice_capture_rows_written_total",
            "Rows committed to the logbook, by table.",
            ["table"],
            registry=r,
        )
        self.capture_spilled = Counter(
            "apprentice_capture_rows_spilled_total",
            "Rows that found the queue full and waited in the journal on disk (written once "
            "the writer caught up).",
            registry=r,
        )
        self.capture_failures = Counter(
            "apprentice_capture_write_failures_total",
            "Logbook batch writes that failed (retried with backoff; their rows wait in the "
            "queue and the journal).",
            registry=r,
        )
        self.capture_replayed = Counter(
            "apprentice_capture_rows_replayed_total",
            "Rows written from the journal: at start (rows a stopped process had not "
            "committed) or after the queue overflowed.",
            registry=r,
        )
        self.capture_degraded = Gauge(
            "apprentice_capture_degraded",
            "1 while capture cannot keep up (the queue is full or writes are failing; "
            "readiness is false meanwhile), else 0.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.capture_dropped = Counter(
            "apprentice_capture_rows_dropped_total",
            "Rows lost because neither the queue nor the journal could take them (a full "
            "disk with a full queue).",
            registry=r,
        )
        self.capture_journal_failures = Counter(
            "apprentice_capture_journal_failures_total",
            "Rows that could not be appended to the journal (they survive a crash only once "
            "committed).",
            registry=r,
        )
        self.capture_rejected = Counter(
            "apprentice_capture_rows_rejected_total",
            "Rows the logbook cannot hold (kept in journal/rejected/ with the reason).",
            registry=r,
        )
        self.segments_quarantined = Counter(
            "apprentice_segments_quarantined_total",
            "Files under the segment folders that were not readable segments, moved to "
            "quarantine/ at start.",
            registry=r,
        )
        self.capture_skipped = Counter(
            "apprentice_capture_skipped_total",
            "Requests not captured, by reason (header, route_config).",
            ["reason"],
            registry=r,
        )
        self.segments_sealed = Counter(
            "apprentice_segments_sealed_total",
            "Parquet segments sealed from the logbook, by table.",
            ["table"],
            registry=r,
        )
        self.rows_sealed = Counter(
            "apprentice_rows_sealed_total",
            "Rows moved from the logbook into Parquet segments, by table.",
            ["table"],
            registry=r,
        )
        self.last_seal = Gauge(
            "apprentice_last_seal_timestamp_seconds",
            "Unix time of the last successful seal.",
            multiprocess_mode="livemax",
            registry=r,
        )
        # The shared store (an object store's pushes; a directory store has none).
        self.store_push_failures = Counter(
            "apprentice_store_push_failures_total",
            "Sealed files a push to the object store left behind, counted at each try (they "
            "wait in the local mirror and are pushed at the next seal).",
            registry=r,
        )
        self.store_unpushed = Gauge(
            "apprentice_store_unpushed_files",
            "Sealed files in the local mirror that are not in the object store yet.",
            registry=r,
        )

        self._declare_rollout(r)
        self._declare_cascade(r)
        self._declare_drift_and_retrain(r)

    def _declare_rollout(self, r: CollectorRegistry) -> None:
        # Students in traffic (issue 5): shadow pairs, fallbacks, the canary controller.
        self.shadow_comparisons = Counter(
            "apprentice_shadow_comparisons_total",
            "Shadow pairs compared, by verdict (agree, disagree, error).",
            ["route", "verdict"],
            registry=r,
        )
        self.fallbacks = Counter(
            "apprentice_fallbacks_total",
            "Student answers replaced by the teacher's, by reason (low_confidence, "
            "invalid_json, invalid_tool_call, error, timeout). The request itself is counted "
            "in apprentice_requests_total with served_by=teacher.",
            ["route", "reason"],
            registry=r,
        )
        self.student_bypassed = Counter(
            "apprentice_student_bypassed_total",
            "Requests routed to a student but sent to the teacher because the student cannot "
            "serve them, by reason (tools, n>1, images, audio, files, stop, content).",
            ["route", "reason"],
            registry=r,
        )
        self.canary_state = Gauge(
            "apprentice_canary_state",
            "1 for the route's current canary state, 0 for the others (idle, shadow, canary, "
            "promoted, paused, rolled_back).",
            ["route", "state"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.canary_step = Gauge(
            "apprentice_canary_step",
            "Index of the current canary step in the route's step list (0 = first step).",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.canary_weight = Gauge(
            "apprentice_canary_weight_ratio",
            "Share of the route's requests served by students (0-1).",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.shadow_skipped = Counter(
            "apprentice_shadow_skipped_total",
            "Shadow comparisons not started because too many were already in flight.",
            ["route"],
            registry=r,
        )
        self.canary_transitions = Counter(
            "apprentice_canary_transitions_total",
            "Canary state changes, by reason (checks_passed, agreement, error_ratio, latency, "
            "fallback_ratio, drift, manual, auto_canary).",
            ["route", "from_state", "to_state", "reason"],
            registry=r,
        )
        self.student_info = Gauge(
            "apprentice_student_info",
            "1 for the student each route currently serves or shadows, with its version and base.",
            ["route", "version", "base"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )

    def _declare_cascade(self, r: CollectorRegistry) -> None:
        # The calibrated cascade (issue 11): what eval predicted for each serving student, and
        # what its shadow and holdout pairs show live.
        self.cascade_coverage = Gauge(
            "apprentice_cascade_coverage_ratio",
            "Share of a student's answers its cascade rule serves, by source: predicted (eval, "
            "cross-validated) or live (its latest shadow and holdout pairs).",
            ["route", "version", "source"],
            registry=r,
        )
        self.cascade_agreement = Gauge(
            "apprentice_cascade_agreement_ratio",
            "Share of a student's served answers that match the teacher, by source: predicted "
            "(eval, cross-validated) or live (its latest shadow and holdout pairs).",
            ["route", "version", "source"],
            registry=r,
        )
        self.cascade_live_pairs = Gauge(
            "apprentice_cascade_live_pairs",
            "Shadow and holdout pairs behind a student's live coverage and agreement.",
            ["route", "version"],
            registry=r,
        )
        self.cascade_pairs = Counter(
            "apprentice_cascade_pairs_total",
            "Shadow and holdout pairs by what the student's cascade rule decided (served, "
            "deferred) and whether its answer matched the teacher's (agree, disagree).",
            ["route", "decision", "verdict"],
            registry=r,
        )

    def set_predicted_cascade(
        self, route: str, version: str, coverage: float | None, agreement: float | None
    ) -> None:
        """Eval's prediction for the route's serving student; other versions' series go."""
        self.clear_cascade(route, keep=version)
        for gauge, value in ((self.cascade_coverage, coverage),
                             (self.cascade_agreement, agreement)):  # fmt: skip
            if value is None:
                _remove(gauge, (route, version, "predicted"))
            else:
                gauge.labels(route, version, "predicted").set(value)

    def clear_cascade(self, route: str, keep: str | None = None) -> None:
        """Remove the route's cascade series, except those of version `keep`."""
        for metric in (self.cascade_coverage, self.cascade_agreement, self.cascade_live_pairs):
            for labels in _label_sets(metric):
                if labels[0] == route and labels[1] != keep:
                    metric.remove(*labels)

    def _declare_drift_and_retrain(self, r: CollectorRegistry) -> None:
        self.drift_score = Gauge(
            "apprentice_drift_score",
            "Latest drift score of live traffic against the student's training data, by method "
            "(prompt_length_psi, token_jsd, unseen_token_rate, disagreement_rate, "
            "output_length_psi).",
            ["route", "method"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.drift_threshold = Gauge(
            "apprentice_drift_threshold",
            "Configured drift threshold, by method and level (warn, act).",
            ["route", "method", "level"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.drift_window = Gauge(
            "apprentice_drift_window_prompts",
            "Live prompts in the route's drift window.",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.drift_last_run = Gauge(
            "apprentice_drift_last_run_timestamp_seconds",
            "Unix time the route's drift scores were last computed.",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.drift_interval = Gauge(
            "apprentice_drift_interval_seconds",
            "Configured seconds between drift runs, so alerts can tell a stale job.",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.retrain_runs = Counter(
            "apprentice_retrain_runs_total",
            "Retrain jobs finished, by outcome (registered, rejected, skipped, failed).",
            ["route", "outcome"],
            registry=r,
        )
        self.retrain_last_run = Gauge(
            "apprentice_retrain_last_run_timestamp_seconds",
            "Unix time the route's last retrain job finished, whatever its outcome.",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.retrain_consecutive_failures = Gauge(
            "apprentice_retrain_consecutive_failures",
            "Retrain jobs that failed in a row (reset by any other outcome).",
            ["route"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.eval_metric = Gauge(
            "apprentice_retrain_last_eval",
            "Held-out evaluation of the last trained student, by metric (exact_match, token_f1, "
            "json_valid, length_ratio as ratios 0-1; latency_p50_seconds in seconds).",
            ["route", "metric"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )

    def set_canary_state(self, route: str, state: str) -> None:
        """Mark `state` as the route's canary state, zeroing the others (state-set style)."""
        if state not in CANARY_STATES:
            raise ValueError(f"unknown canary state {state!r}; use one of {CANARY_STATES}")
        for s in CANARY_STATES:
            self.canary_state.labels(route, s).set(1.0 if s == state else 0.0)

    def set_student(self, route: str, version: str, base: str) -> None:
        """Record the route's current student; the previous one's series is removed."""
        self.clear_student(route)
        self.student_info.labels(route, version, base).set(1.0)

    def clear_student(self, route: str) -> None:
        """The route serves and shadows no student: remove its apprentice_student_info (set it
        to 0 across workers, whose files keep every series they ever had)."""
        for labels in _label_sets(self.student_info):
            if labels[0] == route:
                if self.multiprocess_dir is None:
                    self.student_info.remove(*labels)
                else:
                    self.student_info.labels(*labels).set(0.0)

    def clear_drift(self, route: str, method: str) -> None:
        """No score for `method` this run: its series goes (NaN across workers)."""
        if self.multiprocess_dir is None:
            self.drift_score.remove(route, method)
        else:
            self.drift_score.labels(route, method).set(math.nan)

    def record_retrain(self, route: str, outcome: str, finished_at: float) -> None:
        """Count one finished retrain job and keep its time and failure streak."""
        self.retrain_runs.labels(route, outcome).inc()
        self.retrain_last_run.labels(route).set(finished_at)
        streak = self._failure_streaks.get(route, 0) + 1 if outcome == "failed" else 0
        self._failure_streaks[route] = streak
        self.retrain_consecutive_failures.labels(route).set(float(streak))

    def render(self) -> bytes:
        """The registry in Prometheus text format (every worker's, under `serve --workers`)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def _remove(metric: Gauge, labels: tuple[str, ...]) -> None:
    if labels in _label_sets(metric):
        metric.remove(*labels)


def _label_sets(metric: Gauge) -> list[tuple[str, ...]]:
    """The label values a labelled gauge currently holds series for."""
    return [
        tuple(sample.labels[name] for name in metric._labelnames)
        for family in metric.collect()
        for sample in family.samples
    ]
