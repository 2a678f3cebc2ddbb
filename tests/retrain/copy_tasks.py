"""Two routes whose answers copy spans of the prompt: extraction and free-text tickets.

Used by tests/e2e/test_copying.py and bench/novel_names.py (issue 17). Both teachers are
rule-based, as a deployed extraction prompt behaves:

- extraction: "Hi, this is Marta Kowalski, please send 3 boxes of arabica beans to Porto." ->
  ``{"name": "Marta Kowalski", "item": "arabica beans", "qty": 3, "city": "Porto"}``; twelve
  phrasings, some messages all lower- or upper-case, quantities as digits or words. The teacher
  writes names and cities in title case and items in lower case, whatever the message's case.
- tickets: "the Zorbex Blender 3000 stopped working, need help asap" ->
  ``HIGH | Zorbex Blender 3000 | hardware``: priority and category from a closed set, the
  product copied as written.

`*_rows(n, seed)` draw from the training pools; `novel_*_rows` name people, items, places and
products that no training row names (other pools, shapes never seen).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

EXTRACT_SYSTEM = (
    'Extract the order. Reply with JSON {"name": ..., "item": ..., "qty": ..., "city": ...}.'
)
TICKET_SYSTEM = "Triage the ticket. Reply as: PRIORITY | product | category"

FIRST = ["Marta", "Diego", "Aisha", "Tomas", "Yuki", "Lena", "Omar", "Priya", "Jonas", "Sofia",
         "Kenji", "Amara", "Luca", "Nadia", "Pavel", "Elif"]  # fmt: skip
LAST = ["Kowalski", "Rossi", "Laurent", "Novak", "Tanaka", "Berg", "Haddad", "Sharma", "Weber",
        "Costa", "Okafor", "Silva", "Ivanova", "Moreau", "Dubois", "Kaya"]  # fmt: skip
ITEMS = ["arabica beans", "paper towels", "green tea", "led bulbs", "olive oil", "printer paper",
         "coffee filters", "dish soap", "hand cream", "notebooks", "ink cartridges",
         "cable ties"]  # fmt: skip
CITIES = ["Porto", "Lyon", "Krakow", "Osaka", "Bergen", "Leeds", "Graz", "Malmo", "Turin",
          "Ghent", "Cork", "Brno"]  # fmt: skip

NOVEL_FIRST = ["Ingrid", "Mateus", "Zainab", "Hiroshi", "Ottilie", "Bjorn", "Chiara", "Rafael",
               "Wanjiru", "Dmitri", "Saoirse", "Keanu"]  # fmt: skip
NOVEL_LAST = ["Lindqvist", "Okonkwo", "Petrenko", "Yamamoto", "Fitzgerald", "Castellanos",
              "Mbeki", "Horvath", "Quintero", "Albrecht"]  # fmt: skip
NOVEL_ITEMS = ["basmati rice", "stapler pins", "maple syrup", "rubber gloves", "sticky notes",
               "almond milk", "lens wipes", "bin bags", "sea salt", "glue sticks"]  # fmt: skip
NOVEL_CITIES = ["Zaragoza", "Uppsala", "Bratislava", "Nantes", "Aarhus", "Sevilla", "Dundee",
                "Wroclaw", "Salzburg", "Lugano"]  # fmt: skip

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve"]  # fmt: skip

EXTRACT_TEMPLATES = [
    "Hi, this is {name}, please send {qty} boxes of {item} to {city}.",
    "{name} here. I need {qty} packs of {item} delivered in {city}.",
    "Order for {name}: {qty} x {item}, ship to {city}",
    "Please deliver {qty} {item} to {city}. Thanks, {name}",
    "Can you send {item} ({qty}) to our {city} office? - {name}",
    "New order from {name} in {city}: {item}, quantity {qty}",
    "{city} branch needs {qty} cases of {item}. Contact: {name}",
    "hello, {name} from {city} wants {qty} units of {item}",
    "We are out of {item} in {city}, send {qty} please. {name}",
    "To: {city}. Items: {item}. Qty: {qty}. Requested by {name}.",
    "My name is {name} and I would like {qty} bags of {item} sent to {city}",
    "Quick one: {qty} {item} for {name}, {city} store",
]

PRODUCTS = ["Zorbex Blender", "Nimbus Kettle", "Aerolite Fan", "Quartz Watch", "Solace Lamp",
            "Vertex Router", "Pebble Speaker", "Orion Monitor", "Lumen Desk Light",
            "Echo Buds"]  # fmt: skip
NOVEL_PRODUCTS = ["Kraxel Juicer", "Thundra Heater", "Mivvo Scale", "Pendulo Clock",
                  "Skyvane Drone", "Corvid Webcam", "Gallium Charger", "Tessel Mixer"]  # fmt: skip
MODELS = ["", "", "", " 3000", " Pro", " X2", " Mini", " 7"]
CATEGORIES: dict[str, list[str]] = {
    "hardware": ["my {p} stopped working", "the {p} makes a grinding noise",
                 "{p} won't turn on anymore", "the screen of my {p} is cracked"],
    "billing": ["I was charged twice for the {p}", "the invoice for my {p} is wrong",
                "refund for the {p} never arrived", "why did the {p} cost more than listed"],
    "shipping": ["my {p} has not arrived yet", "the {p} was delivered to the wrong house",
                 "tracking for the {p} is stuck", "the box of the {p} came crushed"],
    "setup": ["how do I connect the {p} to wifi", "can't pair the {p} with my phone",
              "the {p} app keeps asking for a code", "where is the manual for the {p}"],
}  # fmt: skip
URGENT = ["urgent: ", "ASAP, ", "help! ", ""]
CALM = ["", " when you have time", " no rush", ""]


def _row(i: int, system: str, text: str, answer: str, route: str, cluster: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return {
        "request_id": f"req-{i}",
        "task": None,
        "session_hash": None,
        "teacher": f"rule/{route}",
        "prompt_fingerprint": route,
        "messages": json.dumps(messages),
        "tools": None,
        "response_format": None,
        "answer": json.dumps({"role": "assistant", "content": answer}),
        "answer_text": answer,
        "teacher_logprobs": None,
        "weight": 1.0,
        "cluster": cluster,
        "group_id": f"g-{i}",
        "started_at": datetime(2026, 1, 1),
    }


def _distinct(
    n: int, seed: int, start: int, make: Callable[[random.Random], tuple[str, str, str, str]]
) -> list[dict[str, Any]]:
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n:
        system, text, answer, cluster = make(rng)
        if text not in seen:
            seen.add(text)
            route = "extract" if system == EXTRACT_SYSTEM else "tickets"
            rows.append(_row(start + len(rows), system, text, answer, route, cluster))
    return rows


# -- extraction --------------------------------------------------------------------------


def extraction_answer(name: str, item: str, qty: int, city: str) -> str:
    """The teacher's JSON: names and cities title-cased, items lower-cased."""
    return json.dumps(
        {"name": name.title(), "item": item.lower(), "qty": qty, "city": city.title()}
    )


def _extraction(
    first: list[str], last: list[str], items: list[str], cities: list[str]
) -> Callable[[random.Random], tuple[str, str, str, str]]:
    def make(rng: random.Random) -> tuple[str, str, str, str]:
        name = f"{rng.choice(first)} {rng.choice(last)}"
        item, city, qty = rng.choice(items), rng.choice(cities), rng.randint(1, 12)
        spelled = NUMBER_WORDS[qty] if rng.random() < 0.35 else str(qty)
        template = rng.randrange(len(EXTRACT_TEMPLATES))
        text = EXTRACT_TEMPLATES[template].format(name=name, item=item, qty=spelled, city=city)
        case = rng.random()
        text = text.lower() if case < 0.15 else text.upper() if case < 0.25 else text
        return EXTRACT_SYSTEM, text, extraction_answer(name, item, qty, city), f"t{template}"

    return make


def extraction_rows(n: int, seed: int, start: int = 0) -> list[dict[str, Any]]:
    """n distinct extraction requests over the training pools, with the teacher's answers."""
    return _distinct(n, seed, start, _extraction(FIRST, LAST, ITEMS, CITIES))


def novel_extraction_rows(n: int, seed: int, start: int = 100_000) -> list[dict[str, Any]]:
    """n requests whose person, item and city are all absent from `extraction_rows`."""
    make = _extraction(NOVEL_FIRST, NOVEL_LAST, NOVEL_ITEMS, NOVEL_CITIES)
    return _distinct(n, seed, start, make)


# -- free-text tickets ---------------------------------------------------------------------


def ticket_answer(text: str, product: str, category: str) -> str:
    lowered = text.lower()
    if any(w in lowered for w in ("urgent", "asap", "help!")):
        priority = "HIGH"
    elif "no rush" in lowered or "when you have time" in lowered:
        priority = "LOW"
    else:
        priority = "MEDIUM"
    return f"{priority} | {product} | {category}"


def _tickets(products: list[str]) -> Callable[[random.Random], tuple[str, str, str, str]]:
    def make(rng: random.Random) -> tuple[str, str, str, str]:
        product = rng.choice(products) + rng.choice(MODELS)
        category = rng.choice(sorted(CATEGORIES))
        body = rng.choice(CATEGORIES[category]).format(p=product)
        text = rng.choice(URGENT) + body + rng.choice(CALM)
        return TICKET_SYSTEM, text, ticket_answer(text, product, category), category

    return make


def ticket_rows(n: int, seed: int, start: int = 0) -> list[dict[str, Any]]:
    """n distinct tickets over the training products, with the teacher's answers."""
    return _distinct(n, seed, start, _tickets(PRODUCTS))


def novel_ticket_rows(n: int, seed: int, start: int = 100_000) -> list[dict[str, Any]]:
    """n tickets naming products that no `ticket_rows` ticket names."""
    return _distinct(n, seed, start, _tickets(NOVEL_PRODUCTS))
