"""The path a real pretrained base takes (Qwen2.5, SmolLM2, Llama-3.2 as a local folder), on a
small random-init Qwen2 model saved in that format: its own byte-level BPE tokenizer, a
Qwen-style chat template (default system prompt, <|im_start|>/<|im_end|> markers), LoRA on
attention and MLP, the loss on the assistant's answer and its end marker only, served by the
proxy. No weights can be downloaded here; the code path is the one a real base takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from retrain import students
from retrain.examples import IGNORE, build_example
from retrain.job import run_retrain
from retrain.settings import RetrainSettings
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.retrain.triage_task import SYSTEM, make_rows, write_dataset

# Qwen2.5-Instruct's template, trimmed of tool calling: a system turn (a default one when the
# conversation has none), <|im_start|>role\n...<|im_end|>\n per turn.
QWEN_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def save_qwen_style_base(path: Path, texts: list[str]) -> Path:
    """A random-init Qwen2 causal LM (GQA, tied embeddings) and its tokenizer, saved as a
    Hugging Face folder exactly as a downloaded base is laid out."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = QWEN_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = make_rows(200, seed=4)
    return save_qwen_style_base(
        tmp_path_factory.mktemp("qwen-style"), [r["messages"] for r in rows]
    )


def test_the_loss_covers_the_answer_and_its_end_marker_only(base: Path) -> None:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base)
    row = make_rows(1, seed=5)[0]
    example = build_example(tokenizer, row, max_length=512)
    assert example is not None
    answer = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE
    ]
    prompt = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE
    ]
    assert tokenizer.decode(answer) == row["answer_text"] + "<|im_end|>"
    rendered = tokenizer.decode(prompt)
    assert rendered.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_a_lora_student_on_a_hf_base_is_trained_registered_and_served(
    base: Path, tmp_path: Path
) -> None:
    rows = make_rows(120, seed=6)
    data_dir = tmp_path / "data"
    write_dataset(data_dir, "triage", 1, rows[:100], rows[100:])
    settings = RetrainSettings(
        base=str(base), method="lora", max_steps=30, warmup_steps=5, batch_size=8,
        eval_every=1000, eval_sample=2, latency_samples=1, max_new_tokens=8,
        gate={"exact_match": 0.0}, augment={"enabled": False},
    )  # fmt: skip
    result = run_retrain(data_dir, "triage", settings, progress=False)
    manifest = students.read_manifest(result.path)
    assert manifest["method"] == "lora" and manifest["base_path"] == str(base.resolve())
    adapter = (result.path / "adapter_config.json").read_text()
    for module in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert module in adapter
    assert not (result.path / "model.safetensors").exists()  # an adapter, not a copy of the base

    answers = {r["messages"]: r["answer_text"] for r in rows}

    def teacher(body: dict[str, Any]) -> str:
        return answers.get(str(body["messages"]), '{"intent": "other"}')

    # An untrained student is unsure of every token: no floor and no cascade, so its answer is
    # served and the path is what is tested.
    with (
        FakeTeacher(answer=teacher) as fake,
        RunningProxy(
            proxy_config(
                data_dir, fake, canary={"holdout_share": 0.0}, cascade=False, confidence_floor=None
            )
        ) as proxy,
    ):
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        body = {"version": f"v{result.version}", "weight": 100}
        response = httpx.post(
            f"{proxy.url}/admin/canary/triage/set-weight", json=body, headers=headers, timeout=60
        )
        assert response.status_code == 200, response.text
        chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
        raw = chat.chat.completions.with_raw_response.create(
            model="triage",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}],
            max_tokens=8,
        )
    assert raw.headers["x-apprentice-served-by"] == f"student:v{result.version}"
    assert raw.parse().choices[0].message.role == "assistant"
