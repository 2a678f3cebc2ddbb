"""The built-in `tiny` base: a small Llama model and a tokenizer made from a route's own text.

Built once per route under ``data_dir/students/<route>/base/`` and reused by every later
adapter, so that the whole loop runs offline on a CPU.

The tokenizer (``tiny_tokenizer = "words"``, the default) spells anything: every byte is a
token, digits are single tokens, and the only longer tokens are whole words of the route's
template ("please", ``": "``), never a word of a rare span (a name, an item, a place: the
dataset's `spans`). A name is then the same letters in the prompt and in the answer, whatever
precedes it, so a student can copy it letter by letter; a byte-level BPE merges " Marta" and
"Marta" into different tokens and swallows known names whole, and its students wrote invented
words where an unseen name belonged (issue 17). ``"bpe"`` keeps the byte-level BPE (digits
split; measured on a JSON task: per-token loss 0.44 vs 1.05 at step 300 against merged digits).

The model is pretrained briefly on the route's prompts and answers (plain causal LM). Copy
drills mixed into that text (strings never seen, repeated in context) were measured and did
not teach this architecture to copy (issue 17: 0 of 40 after 1,000 steps); routes whose
answers copy get slots instead (`retrain.slots`).

Chat template (fixed; every turn ends with ``<|end|>``, the EOS token)::

    <|tools|>\\n[...tools JSON...]<|end|>\\n        (only when tools were offered)
    <|system|>\\n{content}<|end|>\\n
    <|user|>\\n{content}<|end|>\\n
    <|assistant|>\\n{content}<|end|>\\n
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from retrain.settings import RetrainSettings
from retrain.slots import MARKERS

log = logging.getLogger("retrain")

END, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|tools|>"]
SPECIAL_TOKENS = [PAD, END, *ROLE_TOKENS]

CHAT_TEMPLATE = (
    "{% if tools %}<|tools|>\n{{ tools | tojson }}<|end|>\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% elif m['content'] %}{% for part in m['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if m.get('tool_calls') %}{{ m['tool_calls'] | tojson }}{% endif %}"
    "<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def train_tokenizer(
    texts: Sequence[str],
    vocab_size: int,
    kind: str = "words",
    span_words: set[str] | frozenset[str] = frozenset(),
) -> PreTrainedTokenizerFast:
    """The route's tokenizer (see the module docstring), wrapped for transformers.

    `span_words`: case-folded words of rare spans, never made whole tokens (``words`` only).
    """
    if kind == "words":
        tok = _word_tokenizer(texts, vocab_size, span_words)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = _pre_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    # Slot markers are whole tokens (never special: decoding keeps them) for students with
    # slots (retrain.slots).
    tok.add_tokens([AddedToken(m, normalized=False, special=False) for m in MARKERS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def _word_tokenizer(
    texts: Sequence[str], vocab_size: int, span_words: set[str] | frozenset[str]
) -> Tokenizer:
    """Bytes, plus the route's most useful whole pre-tokens (template words, punctuation runs)
    that hold no span word; no merges, so a word not in the vocabulary is spelled in bytes."""
    pre = _pre_tokenizer()
    df: Counter[str] = Counter()
    for text in texts:
        df.update({piece for piece, _ in pre.pre_tokenize_str(text)})
    floor = max(2, len(texts) // 500)  # in at least 0.2% of texts: a template, not a one-off
    words = [
        w for w, n in df.items()
        if n >= floor and len(w) > 1 and not _holds_span_word(w, span_words)
    ]  # fmt: skip
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    room = max(0, vocab_size - len(SPECIAL_TOKENS) - len(alphabet))
    words = sorted(words, key=lambda w: (-df[w] * (len(w) - 1), w))[:room]
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *alphabet, *sorted(words)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], ignore_merges=True))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def _holds_span_word(piece: str, span_words: set[str] | frozenset[str]) -> bool:
    text = decoders.ByteLevel().decode([piece])  # the piece as text ("ĠPorto" -> " Porto")
    return any(w.casefold() in span_words for w in re.findall(r"\w+", text))


def tiny_config(
    vocab_size: int, settings: RetrainSettings, pad_id: int, eos_id: int
) -> LlamaConfig:
    hidden = settings.tiny_hidden_size
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=settings.tiny_layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 32),
        max_position_embeddings=max(1024, settings.max_length),
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )


def render_conversation(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Prompt messages plus the teacher's answer as one conversation (pretraining text)."""
    messages = list(json.loads(row["messages"]))
    messages.append({"role": "assistant", "content": row["answer_text"] or ""})
    return messages


def pretraining_texts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The route's unlabeled text in the chat template, as the student will later see it."""
    texts = []
    for row in rows:
        tools = json.loads(row["tools"]) if row.get("tools") else None
        texts.append(render_chat(render_conversation(row), tools))
    return texts


def render_chat(
    messages: list[dict[str, Any]], tools: list[Any] | None, add_generation_prompt: bool = False
) -> str:
    """CHAT_TEMPLATE in Python, so the tokenizer can be trained on text before it exists.

    tests/retrain/test_tiny_base.py checks that the two agree.
    """
    out = f"<|tools|>\n{json.dumps(tools, ensure_ascii=False)}{END}\n" if tools else ""
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str):
            parts = content or []
            content = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
        calls = m.get("tool_calls")
        calls_text = json.dumps(calls, ensure_ascii=False) if calls else ""
        out += f"<|{m['role']}|>\n{content}{calls_text}{END}\n"
    return out + ("<|assistant|>\n" if add_generation_prompt else "")


def build_tiny_base(
    out_dir: Path, rows: Sequence[dict[str, Any]], settings: RetrainSettings, progress: bool
) -> Path:
    """Train the tokenizer, pretrain the model on `rows`, save both to `out_dir` atomically."""
    torch.manual_seed(settings.seed)
    texts = pretraining_texts(rows)
    tokenizer = train_tokenizer(
        texts, settings.tiny_vocab_size, settings.tiny_tokenizer, _span_words(rows)
    )
    config = tiny_config(len(tokenizer), settings, tokenizer.pad_token_id, tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    started = time.perf_counter()
    mixed = list(texts)  # packed in a seeded order, so a block holds rows of every kind
    random.Random(settings.seed).shuffle(mixed)
    losses = _pretrain(model, tokenizer, mixed, settings, progress)
    seconds = time.perf_counter() - started
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {
        "kind": "tiny",
        "rows": len(rows),
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_steps": settings.pretrain_steps,
        "tokenizer": settings.tiny_tokenizer,
        "pretrain_seconds": round(seconds, 2),
        "final_loss": losses[-1] if losses else None,
        "chat_template": CHAT_TEMPLATE,
    }
    (tmp / "apprentice_base.json").write_text(json.dumps(info, indent=2))
    tmp.rename(out_dir)
    log.info("built tiny base in %s (%.1fs pretraining)", out_dir, seconds)
    return out_dir


def _span_words(rows: Sequence[dict[str, Any]]) -> set[str]:
    """Case-folded words of every rare span of `rows`: never whole tokens."""
    from retrain.augment import row_spans  # augment imports curation; keep this module light

    return {
        w.casefold() for spans in row_spans(rows) for span in spans
        for w in re.findall(r"\w+", span.text)
    }  # fmt: skip


def _pretrain(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    settings: RetrainSettings,
    progress: bool,
) -> list[float]:
    """Plain next-token prediction on packed blocks of the route's text (no labels, no masks)."""
    if settings.pretrain_steps == 0:
        return []
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    block = 256  # a whole conversation, so a drill's copy sees what it copies
    n_blocks = max(1, len(ids) // block)
    data = torch.tensor(ids[: n_blocks * block] or ids, dtype=torch.long).view(n_blocks, -1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.pretrain_lr, weight_decay=0.0)
    steps, batch = settings.pretrain_steps, min(8, n_blocks)
    generator = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    model.train()
    bar = _bar(steps, "pretrain tiny base", progress)
    for step in range(steps):
        lr = settings.pretrain_lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = data[torch.randint(0, n_blocks, (batch,), generator=generator)]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
