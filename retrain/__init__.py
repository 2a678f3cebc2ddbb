"""The distillation stage: dataset in, gated student out (issue 4).

Entry points (imported from their modules so that `import retrain` stays free of torch):
- `retrain.job.run_retrain` - train, evaluate, gate and register one student.
- `retrain.registry.list_students`, `show_student`, `current_student` - the student registry.
- `retrain.models.load_student` - a registered student ready to generate.
- `retrain.evaluation.generate` - batched greedy generation.
- `retrain.schedule.decide`, `is_running`, `route_lock` - when to retrain, one run per route.
"""
