"""Teacher prices read from litellm's table without importing litellm, and what a row costs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from monitoring.metrics import Metrics
from proxy.accounting import Accounting, Pricer, litellm_price_table, table_price
from proxy.settings import RouteSettings
from tests.logbook.rows import Row

PRICED = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/o3-mini", "anthropic/claude-haiku-4-5",
          "gemini/gemini-2.5-flash", "mistral/mistral-large-latest"]  # fmt: skip
UNPRICED = ["anthropic/claude-3-5-haiku-20241022", "openai/Qwen/Qwen2.5-7B-Instruct"]


@pytest.mark.parametrize("teacher", PRICED)
def test_prices_agree_with_litellms_own_cost_function(teacher: str) -> None:
    import litellm

    prompt, completion = litellm.cost_per_token(
        model=teacher, prompt_tokens=1000, completion_tokens=500
    )
    price = table_price(litellm_price_table(), teacher)
    assert price is not None
    assert 1000 * price[0] + 500 * price[1] == pytest.approx(prompt + completion)


@pytest.mark.parametrize("teacher", UNPRICED)
def test_models_litellm_cannot_price_have_no_price_here_either(teacher: str) -> None:
    import litellm

    with pytest.raises(litellm.exceptions.ModelNotMappedError):
        litellm.cost_per_token(model=teacher, prompt_tokens=1000, completion_tokens=500)
    assert table_price(litellm_price_table(), teacher) is None


def test_the_table_is_read_without_importing_litellm() -> None:
    code = (
        "import sys\nfrom proxy.accounting import Pricer\nfrom proxy.settings import "
        "RouteSettings\np = Pricer.load([RouteSettings(name='r', teacher='openai/gpt-4o-mini')])"
        "\nassert p.prices['r'] is not None\nprint('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_route_prices_win_and_unknown_models_have_none() -> None:
    pricer = Pricer.load(
        [
            RouteSettings(name="own", teacher="openai/gpt-4o", input_cost_per_mtok=1.0,
                          output_cost_per_mtok=2.0),
            RouteSettings(name="vllm", teacher="openai/Qwen/Qwen2.5-7B-Instruct"),
        ]
    )  # fmt: skip
    assert pricer.cost("own", 1_000_000, 500_000) == pytest.approx(2.0)
    assert pricer.prices["vllm"] is None and pricer.cost("vllm", 10, 10) is None


def test_accounting_counts_tokens_and_cost_paid_or_avoided() -> None:
    metrics = Metrics(CollectorRegistry())
    pricer = Pricer({"r": (1e-6, 2e-6)})
    accounting = Accounting(metrics, pricer)
    # The teacher's cost is the row's own (priced when it was built); a student's is avoided.
    accounting.count(Row("a", prompt_tokens=10, completion_tokens=5, response="{}",
                         cost_usd=20e-6))  # fmt: skip
    accounting.count(Row("b", served_by="student:v1", prompt_tokens=10, completion_tokens=5,
                         response="{}"))  # fmt: skip
    accounting.count(Row("c", status=502, prompt_tokens=3, completion_tokens=None))
    value = metrics.registry.get_sample_value
    assert value("apprentice_tokens_total", {"route": "r", "served_by": "teacher",
                                             "kind": "prompt"}) == 13  # fmt: skip
    assert value("apprentice_teacher_cost_usd_total", {"route": "r"}) == pytest.approx(20e-6)
    assert value("apprentice_teacher_cost_avoided_usd_total", {"route": "r"}) == pytest.approx(
        20e-6
    )
