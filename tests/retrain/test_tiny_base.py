from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrain.models import load_base
from retrain.settings import RetrainSettings
from retrain.tiny_base import build_tiny_base, render_chat


def test_python_renderer_agrees_with_the_saved_template(tokenizer: Any) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "1", "function": {"name": "f"}}],
        },
        {"role": "tool", "content": "ok"},
    ]
    for with_tools in (None, tools):
        for gen in (False, True):
            expected = render_chat(messages, with_tools, add_generation_prompt=gen)
            got = tokenizer.apply_chat_template(
                messages, tools=with_tools, add_generation_prompt=gen, tokenize=False
            )
            assert got == expected


def test_tiny_base_is_built_saved_and_reloaded(tmp_path: Path, triage_rows: list[dict]) -> None:
    settings = RetrainSettings(tiny_hidden_size=32, tiny_vocab_size=400, pretrain_steps=3)
    out = build_tiny_base(tmp_path / "base", triage_rows[:50], settings, progress=False)
    info = json.loads((out / "apprentice_base.json").read_text())
    assert info["kind"] == "tiny" and info["rows"] == 50
    model, tokenizer = load_base(out)
    assert model.config.tie_word_embeddings
    assert model.config.hidden_size == 32
    assert tokenizer.eos_token == "<|end|>" and tokenizer.chat_template
    assert not (tmp_path / "base.tmp").exists()
