"""Settings of the logbook writer and sealing: the ``[logbook]`` section of the config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LogbookSettings(BaseModel):
    """How captured rows are batched into the DuckDB file and sealed into segments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Rows are durable in the journal before their answer ends; this interval only sets how
    # soon they are in DuckDB (the console's newest rows). Each flush costs 4-6 ms of CPU
    # whatever its size, on the cores that answer requests: every 100 ms that was about 5% of
    # one core and the added p99 of the requests it overlapped.
    flush_interval_ms: int = Field(
        1000, ge=1, le=60_000, description="Writer batch interval (how soon rows are in DuckDB)."
    )
    queue_size: int = Field(
        50_000,
        ge=1,
        description="Rows held in memory for the writer; beyond it rows wait in the journal on "
        "disk (readiness turns false until the writer catches up).",
    )
    seal_interval_s: float = Field(
        60.0, gt=0, description="How often committed rows are sealed into Parquet segments."
    )
    fsync: bool = Field(
        False,
        description="fsync every journal append: rows survive power loss, not only a crash, "
        "at the cost of one device flush per request.",
    )
