"""What replicas share besides files: canary snapshots, traffic counters, a leader lease and a
replica registry, in an embedded SQLite file (one host) or PostgreSQL (many)."""
