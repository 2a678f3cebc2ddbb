"""`apprentice stats`: what the sealed log holds, by route, by who served it, by day."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from logbook.segments import Skipped, open_segments
from store.store import Store

# Shadow answers are logged as student rows for comparison, but nobody was served by them.
SERVED_BY = (
    "CASE WHEN tags LIKE '%\"shadow\":true%' THEN served_by || ' (shadow)' "
    "ELSE served_by END AS served_by"
)


def log_stats(store: Store) -> dict[str, Any]:
    """Totals, per route and served_by, and per day, from every replica's sealed segments
    (pulled from the store first; StoreUnavailable when it cannot be reached)."""
    skipped: list[Skipped] = []
    con = open_segments(store, skipped=skipped)
    sums = (
        "count(*) AS rows, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
        "coalesce(sum(completion_tokens), 0) AS completion_tokens, "
        "coalesce(sum(cost_usd), 0) AS cost_usd, "
        "count(*) FILTER (WHERE outcome <> 'ok') AS errors"
    )
    total = _records(con.execute(f"SELECT {sums}, count(DISTINCT route) AS routes FROM requests"))
    by_route = _records(
        con.execute(
            f"SELECT route, {SERVED_BY}, {sums} FROM requests GROUP BY ALL "
            "ORDER BY route, served_by"
        )
    )
    by_day = _records(
        con.execute(
            f"SELECT CAST(started_at AS DATE)::VARCHAR AS day, {sums} FROM requests "
            "GROUP BY ALL ORDER BY day"
        )
    )
    feedback = con.execute("SELECT count(*) FROM feedback").fetchone()
    return {
        "store": store.describe(),
        "total": total[0],
        "feedback_rows": int(feedback[0]) if feedback else 0,
        "by_route": by_route,
        "by_day": by_day,
        "skipped_segments": [s.as_dict() for s in skipped],
    }


def render_stats(stats: dict[str, Any]) -> Group:
    """Rich tables of `log_stats` output."""
    total = stats["total"]
    head = Table(title=f"apprentice log ({stats['store']}, sealed segments)")
    for col in ("rows", "routes", "prompt tokens", "completion tokens", "cost USD", "errors"):
        head.add_column(col, justify="right")
    head.add_row(
        str(total["rows"]),
        str(total["routes"]),
        str(total["prompt_tokens"]),
        str(total["completion_tokens"]),
        f"{total['cost_usd']:.4f}",
        str(total["errors"]),
    )
    routes = Table(title="by route")
    for col in ("route", "served by", "rows", "tokens", "cost USD", "errors"):
        routes.add_column(col)
    for r in stats["by_route"]:
        tokens = r["prompt_tokens"] + r["completion_tokens"]
        routes.add_row(
            r["route"],
            r["served_by"],
            str(r["rows"]),
            str(tokens),
            f"{r['cost_usd']:.4f}",
            str(r["errors"]),
        )
    days = Table(title="by day")
    for col in ("day", "rows", "cost USD"):
        days.add_column(col)
    for d in stats["by_day"]:
        days.add_row(d["day"], str(d["rows"]), f"{d['cost_usd']:.4f}")
    return Group(head, routes, days)


def _records(result: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description]
    out = []
    for row in result.fetchall():
        record = dict(zip(names, row, strict=True))
        for key, value in record.items():
            if hasattr(value, "is_integer") and key != "cost_usd":
                record[key] = int(value)
            elif key == "cost_usd":
                record[key] = float(value)
        out.append(record)
    return out
