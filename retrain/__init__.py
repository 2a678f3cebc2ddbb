"""The distillation stage: dataset in, gated student out, and the schedule that runs it.

Entry points (imported from their modules so that `import retrain` stays free of torch):
- `retrain.job.run_retrain` - train, evaluate, gate and register one student.
- `retrain.students` - the student contract, the one module the proxy imports: where
  students live, listing and status, loading, the shared prompt format, agreement measures.
- `retrain.scheduler.Scheduler` - the schedule's loop inside a server; its pure half is
  `retrain.schedule.decide` (with `is_running` and `route_lock`: one run per route).
- `retrain.evaluation.generate` - batched greedy generation.
"""
