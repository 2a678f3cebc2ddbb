"""The logbook: capture of every proxied call into DuckDB, sealed into Parquet segments."""
