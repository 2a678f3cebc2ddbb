"""The teacher relabelling synthetic prompts (``augment.relabel = "teacher"``), priced per call.

Copying labels is right when the answer does not depend on the replaced span (a ticket's
intent does not change with the product's name); when it may (a product's category), the
teacher answers the new prompt instead. Each call is priced like the proxy prices teacher
calls: the route's own `input_cost_per_mtok` / `output_cost_per_mtok`, else litellm's price
table; the augmentation stops asking once `teacher_budget_usd` is spent.

OpenAI-compatible teachers (``openai/...``) are asked over HTTP; any other provider through
litellm. The shell builds one from the route's settings when the process holds the teacher's
key (`apprentice retrain` with the key in the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from retrain.augment import Label


@dataclass(frozen=True)
class TeacherRelabel:
    """A callable `Relabel` for `retrain.augment`: messages in, the teacher's priced answer."""

    teacher: str  # litellm model string, e.g. openai/gpt-4o-mini
    api_key: str | None = None
    api_base: str | None = None
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None
    timeout_s: float = 60.0

    def __call__(self, messages: list[dict[str, Any]]) -> Label:
        if self.teacher.startswith("openai/") and self.api_base:
            text, usage = self._over_http(messages)
        else:
            text, usage = self._through_litellm(messages)
        return Label(text, self.cost(usage))

    def _over_http(self, messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        assert self.api_base is not None
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.teacher.split("/", 1)[1], "messages": messages}
        response = httpx.post(
            self.api_base.rstrip("/") + "/chat/completions",
            json=body,
            headers=headers,
            timeout=self.timeout_s,
        )
        response.raise_for_status()
        data = response.json()
        return str(data["choices"][0]["message"]["content"] or ""), data.get("usage") or {}

    def _through_litellm(self, messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        import litellm

        response = litellm.completion(
            model=self.teacher, messages=messages, api_key=self.api_key, api_base=self.api_base,
            timeout=self.timeout_s,
        )  # fmt: skip
        usage = dict(response.usage) if getattr(response, "usage", None) else {}
        return str(response.choices[0].message.content or ""), usage

    def cost(self, usage: dict[str, Any]) -> float:
        """USD of one call from its usage: the route's prices, else litellm's table (0 when
        the model is not in it)."""
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        if self.input_cost_per_mtok is not None or self.output_cost_per_mtok is not None:
            return (
                prompt * (self.input_cost_per_mtok or 0.0)
                + completion * (self.output_cost_per_mtok or 0.0)
            ) / 1e6
        import litellm

        try:
            inp, out = litellm.cost_per_token(
                model=self.teacher, prompt_tokens=prompt, completion_tokens=completion
            )
        except Exception:  # an unpriced model: litellm raises rather than answering 0
            return 0.0
        return float(inp) + float(out)
