"""The demo's task: triage of customer-support messages into compact JSON.

The teacher's answer is a rule (`teacher_answer`), so the demo can tell exactly whether a
student agrees with it. Answers are kept to ~15 tokens, `{"intent":"...","priority":"..."}`,
because a tiny student trained on a CPU for seconds must reproduce them exactly.

Two phases of traffic come out of `sample_messages`: "base", the distribution the first student
learns, and "shifted", with new phrasings, longer messages (greetings and signatures) and an
intent that "base" never has, so token drift, prompt-length PSI and disagreement all rise.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Literal

Phase = Literal["base", "shifted"]

SYSTEM_PROMPT = (
    "You triage customer-support messages. Reply with one line of JSON and nothing else: "
    '{"intent":"<intent>","priority":"<low|normal|high>"}.'
)

COMMON_INTENTS = (
    "order_status",
    "refund_request",
    "damaged_item",
    "change_address",
    "cancel_order",
    "billing_issue",
    "account_access",
    "product_question",
)
RARE_INTENTS = ("fraud_report", "data_deletion")
NEW_INTENT = "subscription_cancel"  # only in the shifted phase

# Amounts at or above this are escalated; a power of ten so the rule is "four digits or more".
HIGH_AMOUNT_USD = 1000

# First match wins, so the narrow, rare intents are tested before the broad ones.
_INTENT_RULES: tuple[tuple[str, str], ...] = (
    ("fraud_report", r"\bfraud\w*|\bunauthori[sz]ed\b|\bdid not authori[sz]e\b|\bstolen card\b"),
    (
        "data_deletion",
        r"\bgdpr\b|\bpersonal data\b|\berase (my|all)\b|\bdelete (my|all) (data|info)",
    ),
    ("subscription_cancel", r"\bsubscription\b|\bmembership\b|\bauto-?renew"),
    ("cancel_order", r"\bcancel\b|\bcall off\b"),
    ("refund_request", r"\brefund\b|\bmoney back\b|\breimburse"),
    ("damaged_item", r"\bbroken\b|\bdamaged\b|\bcracked\b|\bdefective\b|\bsmashed\b|\bdented\b"),
    ("change_address", r"\baddress\b|\bdeliver it to\b|\bredirect\b"),
    ("billing_issue", r"\bcharged\b|\binvoice\b|\bbilled\b|\bbilling\b|\bstatement\b"),
    ("account_access", r"\bpassword\b|\blog ?in\b|\blocked out\b|\bsign in\b|\b2fa\b"),
    ("order_status", r"\bwhere is\b|\btracking\b|\barrived\b|\bshow(n|ed)? up\b|\bstatus\b"),
)
_URGENT = re.compile(
    r"\burgent\w*|\basap\b|\bimmediately\b|\bright away\b|\bagain\b|\bthird time\b|\bescalat\w*"
)
_AMOUNT = re.compile(r"\$(\d+)(?:\.\d\d)?")
_ALWAYS_HIGH = {"fraud_report", "data_deletion"}
_LOW_UNLESS_URGENT = {"product_question"}


def intents(phase: Phase) -> tuple[str, ...]:
    """The intents that traffic of `phase` can carry."""
    extra = (NEW_INTENT,) if phase == "shifted" else ()
    return COMMON_INTENTS + RARE_INTENTS + extra


def classify(message: str) -> tuple[str, str]:
    """(intent, priority) of a message, by the rules the simulated teacher follows."""
    text = message.lower()
    intent = next((name for name, rx in _INTENT_RULES if re.search(rx, text)), "product_question")
    amounts = [int(m) for m in _AMOUNT.findall(text)]
    if intent in _ALWAYS_HIGH or _URGENT.search(text) or any(a >= HIGH_AMOUNT_USD for a in amounts):
        priority = "high"
    elif intent in _LOW_UNLESS_URGENT:
        priority = "low"
    else:
        priority = "normal"
    return intent, priority


def teacher_answer(message: str) -> str:
    """The teacher's exact answer: compact JSON, keys always in the order intent, priority."""
    intent, priority = classify(message)
    return json.dumps({"intent": intent, "priority": priority}, separators=(",", ":"))


def chat_messages(message: str) -> list[dict[str, str]]:
    """The chat a client sends for one support message: the fixed system prompt, then it."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": message}]


# -- traffic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One generated message with the labels the generator meant it to have."""

    text: str
    intent: str
    priority: str


_PRODUCTS = (
    "wireless earbuds", "standing desk", "coffee grinder", "running shoes", "air fryer",
    "4K monitor", "yoga mat", "backpack", "smart watch", "desk lamp", "blender", "phone case",
    "gaming chair", "electric kettle", "bluetooth speaker", "rain jacket",
)  # fmt: skip
_NAMES = ("Maria", "James", "Aiko", "Lena", "Omar", "Priya", "Tom", "Sofia", "Chen", "Noah")
_CITIES = ("Leeds", "Austin", "Lyon", "Porto", "Osaka", "Denver", "Gdansk", "Cork")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "last week")

# Templates per intent. {o} order, {p} product, {a} amount, {d} day, {c} city, {n} name.
# Each must match its own intent's rule and no earlier rule, and carry no urgency word;
# tests check every template against `classify`.
_BASE: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Where is my order {o}? I placed it {d}.",
        "Hi, can I get a status update on order {o}?",
        "My {p} (order {o}) still has not arrived.",
        "The tracking for {o} has not changed since {d}.",
        "Where is the {p} I ordered {d}? Order number {o}.",
    ),
    "refund_request": (
        "I would like a refund for my {p}, order {o}.",
        "Please refund the ${a} I paid for order {o}.",
        "Can I get my money back for the {p}? It was ${a}.",
        "I returned the {p} on {d}; when will the refund of ${a} come?",
    ),
    "damaged_item": (
        "My {p} arrived broken. Order {o}.",
        "The {p} from order {o} is damaged, the box was crushed.",
        "The screen of my {p} is cracked out of the box.",
        "Order {o}: the {p} is defective and will not turn on.",
    ),
    "change_address": (
        "Can you change the shipping address for order {o} to {c}?",
        "I moved to {c}, please update the address on order {o}.",
        "Wrong address on order {o}, it should go to my office in {c}.",
    ),
    "cancel_order": (
        "Please cancel order {o}.",
        "I want to cancel my {p} order ({o}) before it ships.",
        "Cancel order {o} please, I ordered the wrong size.",
    ),
    "billing_issue": (
        "I was charged twice for order {o}, ${a} each time.",
        "My invoice for {d} shows ${a} but I expected less.",
        "Why was I billed ${a} for the {p}?",
        "I was billed ${a} on {d} and I do not recognise it.",
    ),
    "account_access": (
        "I forgot my password and the reset email never comes.",
        "I cannot log in to my account since {d}.",
        "My account is locked out after too many tries. Name: {n}.",
        "The 2fa code is not accepted when I try to sign in.",
    ),
    "product_question": (
        "Does the {p} come with a warranty?",
        "Is the {p} available in black?",
        "How long does the battery of the {p} last?",
        "Is the {p} compatible with the one I bought {d}?",
    ),
    "fraud_report": (
        "There is an unauthorized order {o} on my account for ${a}.",
        "Someone used a stolen card on my account, I think it is fraud.",
    ),
    "data_deletion": (
        "Under GDPR please delete my data. My name is {n}.",
        "Please erase my personal data and close the account of {n}.",
    ),
}
# Shifted phase: the same intents said another way (new vocabulary), plus the new intent.
_SHIFTED: dict[str, tuple[str, ...]] = {
    "order_status": (
        "yo my parcel {o} never showed up, courier app says out for delivery since {d}",
        "Could you check the shipment status of consignment {o}? The {p} is overdue.",
    ),
    "refund_request": (
        "want a reimbursement for the {p}, paid ${a}, consignment {o}",
        "How do I get my money back for consignment {o}? Paid ${a} via PayPal.",
    ),
    "damaged_item": (
        "the {p} came smashed, parcel {o} was soaked by the courier",
        "Unboxed the {p} and it's dented all over, consignment {o}.",
    ),
    "change_address": (
        "can the courier redirect parcel {o} to my neighbour in {c}?",
        "Please deliver it to {c} instead, consignment {o}.",
    ),
    "cancel_order": ("pls call off consignment {o}, don't need the {p} anymore",),
    "billing_issue": ("my bank statement shows ${a} from you twice for consignment {o}??",),
    "account_access": ("app keeps kicking me out, can't sign in on my new phone since {d}",),
    "product_question": ("does the {p} work with voltage in {c}? thinking of buying two",),
    "subscription_cancel": (
        "Please stop my subscription, I don't want to be charged next month.",
        "How do I turn off auto-renew on my Plus membership?",
        "end my premium subscription effective {d}, thanks",
        "I want to quit the membership plan before the next renewal on {d}.",
    ),
}
_SHIFTED["fraud_report"] = _BASE["fraud_report"]
_SHIFTED["data_deletion"] = _BASE["data_deletion"]

_URGENT_TAILS = (
    " This is urgent.", " Please help ASAP.", " I need this fixed immediately.",
    " This is the third time I am asking.", " I already wrote about this again and again.",
)  # fmt: skip
_SHIFTED_URGENT_TAILS = (" pls escalate this!!", " need it sorted right away")
_GREETINGS = ("Hi team,", "Hello,", "Good morning support,", "hey there,")
_SIGN_OFFS = ("Kind regards, {n}", "Thanks a lot, {n}", "Sent from my phone", "Cheers, {n}")

_RARE_SHARE = 0.025  # per rare intent, in both phases
_NEW_SHARE = 0.25  # share of shifted traffic that is the new intent
_SHIFTED_PHRASING_SHARE = 0.7  # share of shifted, known-intent traffic in the new phrasing


def sample_messages(rng: random.Random, n: int, phase: Phase) -> list[str]:
    """`n` support messages from the traffic of `phase` ("base" or "shifted")."""
    return [s.text for s in sample_labelled(rng, n, phase)]


def sample_labelled(rng: random.Random, n: int, phase: Phase) -> list[Sample]:
    """Like `sample_messages`, with the intent and priority each message was built for."""
    if phase not in ("base", "shifted"):
        raise ValueError(f"Unknown traffic phase {phase!r}; use 'base' or 'shifted'.")
    return [_sample_one(rng, phase) for _ in range(n)]


def _pick_intent(rng: random.Random, phase: Phase) -> str:
    roll = rng.random()
    if roll < _RARE_SHARE * len(RARE_INTENTS):
        return RARE_INTENTS[int(roll / _RARE_SHARE)]
    if phase == "shifted" and rng.random() < _NEW_SHARE:
        return NEW_INTENT
    return rng.choice(COMMON_INTENTS)


def _sample_one(rng: random.Random, phase: Phase) -> Sample:
    intent = _pick_intent(rng, phase)
    shifted = phase == "shifted" and (
        intent == NEW_INTENT or rng.random() < _SHIFTED_PHRASING_SHARE
    )
    template = rng.choice((_SHIFTED if shifted else _BASE)[intent])
    big = rng.random() < 0.12
    amount = rng.randint(1000, 4999) if big else rng.randint(9, 899)
    text = template.format(
        o=f"{rng.choice('ABCKQ')}{rng.randint(10000, 99999)}",
        p=rng.choice(_PRODUCTS),
        a=f"{amount}.{rng.randint(0, 99):02d}" if rng.random() < 0.5 else str(amount),
        d=rng.choice(_DAYS),
        c=rng.choice(_CITIES),
        n=rng.choice(_NAMES),
    )
    urgent = rng.random() < 0.15
    if urgent:
        text += rng.choice(_SHIFTED_URGENT_TAILS if shifted else _URGENT_TAILS)
    if shifted:
        # Longer prompts: what moves the prompt-length PSI.
        name = rng.choice(_NAMES)
        text = f"{rng.choice(_GREETINGS)} {text} {rng.choice(_SIGN_OFFS).format(n=name)}"
    high = intent in _ALWAYS_HIGH or urgent or (big and "{a}" in template)
    priority = "high" if high else "low" if intent in _LOW_UNLESS_URGENT else "normal"
    return Sample(text=text, intent=intent, priority=priority)


def all_templates() -> dict[str, tuple[str, ...]]:
    """Every template by intent, both phases; tests check each against the rules."""
    merged: dict[str, tuple[str, ...]] = {}
    for table in (_BASE, _SHIFTED):
        for intent, templates in table.items():
            merged[intent] = merged.get(intent, ()) + templates
    return merged
