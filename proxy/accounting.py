"""What a finished request cost: teacher prices, and the token and cost counters.

Prices are USD per token of each route's teacher: the route's own `input_cost_per_mtok` /
`output_cost_per_mtok`, else litellm's price table. The table is read from the JSON file
litellm ships, once at start (about 50 ms), without importing litellm (seconds); a teacher
missing from it (any self-hosted model) has no price, found out once, not per request.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from logbook.schema import RequestRow
from monitoring.metrics import Metrics
from proxy.settings import RouteSettings

log = logging.getLogger("apprentice.accounting")
PRICE_TABLE = "model_prices_and_context_window_backup.json"

Price = tuple[float, float]  # USD per prompt token, per completion token


def litellm_price_table() -> dict[str, Any]:
    """litellm's bundled price table, or {} when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_TABLE
    try:
        table: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("litellm's price table %s is unreadable; teacher costs stay empty", path)
        return {}
    return table


def table_price(table: Mapping[str, Any], teacher: str) -> Price | None:
    """A litellm model string's price: its own entry, else the provider-less name's entry."""
    names = [teacher]
    if "/" in teacher:
        names.append(teacher.split("/", 1)[1])
    for name in names:
        entry = table.get(name)
        if isinstance(entry, dict):
            prompt, completion = (
                entry.get("input_cost_per_token"),
                entry.get("output_cost_per_token"),
            )
            if isinstance(prompt, int | float) and isinstance(completion, int | float):
                return float(prompt), float(completion)
    return None


class Pricer:
    """Each route's teacher price, resolved once; other models' (pass-through calls name
    their own) looked up once each."""

    def __init__(
        self, prices: Mapping[str, Price | None], table: Mapping[str, Any] | None = None
    ) -> None:
        self.prices = dict(prices)
        self.table = table or {}
        self._models: dict[str, Price | None] = {}

    @classmethod
    def load(cls, routes: Iterable[RouteSettings]) -> Pricer:
        """Resolve every route's price (reads litellm's table only if a route needs it)."""
        routes = list(routes)
        table = litellm_price_table()
        prices: dict[str, Price | None] = {}
        for route in routes:
            if route.input_cost_per_mtok is not None or route.output_cost_per_mtok is not None:
                prompt = (route.input_cost_per_mtok or 0.0) / 1e6
                prices[route.name] = (prompt, (route.output_cost_per_mtok or 0.0) / 1e6)
                continue
            prices[route.name] = table_price(table, route.teacher)
            if prices[route.name] is None:
                log.info(
                    "no price for %s in litellm's table; set input_cost_per_mtok and "
                    "output_cost_per_mtok on route %s for costs",
                    route.teacher,
                    route.name,
                )
        return cls(prices, table)

    def cost(self, route: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        return _cost(self.prices.get(route), prompt_tokens, completion_tokens)

    def cost_of_model(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """A call's cost at `model`'s price in the table (None for a model it does not know)."""
        if model not in self._models:
            self._models[model] = table_price(self.table, model)
        return _cost(self._models[model], prompt_tokens, completion_tokens)


def _cost(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return prompt_tokens * price[0] + completion_tokens * price[1]


class Accounting:
    """Adds a finished request's tokens and cost to the counters (label lookups cached)."""

    def __init__(self, metrics: Metrics, pricer: Pricer) -> None:
        self.metrics, self.pricer = metrics, pricer
        self._children: dict[tuple[str, str, str], Any] = {}

    def count(self, row: RequestRow) -> None:
        """Tokens by who served; cost paid (the teacher's, priced in the row) or avoided (what
        the teacher would have charged for a student's answer)."""
        served = "teacher" if row.served_by == "teacher" else "student"
        if row.prompt_tokens:
            self._child("prompt", row.route, served).inc(row.prompt_tokens)
        if row.completion_tokens:
            self._child("completion", row.route, served).inc(row.completion_tokens)
        if row.status != 200 or row.response is None:
            return
        if served == "teacher":
            cost = row.cost_usd
        else:
            cost = self.pricer.cost(row.route, row.prompt_tokens or 0, row.completion_tokens or 0)
        if cost is not None:
            self._child("cost", row.route, served).inc(cost)

    def _child(self, kind: str, route: str, served: str) -> Any:
        key = (kind, route, served)
        child = self._children.get(key)
        if child is None:
            m = self.metrics
            if kind in ("prompt", "completion"):
                child = m.tokens.labels(route, served, kind)
            elif served == "teacher":
                child = m.teacher_cost.labels(route)
            else:
                child = m.teacher_cost_avoided.labels(route)
            self._children[key] = child
        return child
