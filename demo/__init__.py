"""The offline demo's parts: the task, the simulated teacher, the traffic, the report."""
