"""In-process students: a registered student (base + LoRA merged) answering on its own thread.

Each loaded student version has one worker thread that owns the model, so the event loop never
waits on torch. Requests that arrive within a short window (default 2 ms) are decoded together
as one left-padded batch; every token goes straight back to its request's asyncio queue through
`loop.call_soon_threadsafe`, which is what makes streaming token-by-token. `StudentPool` holds
several students (one per (route, version)), loading lazily and unloading on request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.settings import StudentSettings
from proxy.student_protocol import (
    Ending,
    Piece,
    StudentError,
    StudentResult,
    StudentStream,
    Transcript,
    collect,
    logprob_entry,
    max_new_tokens,
    requested_top_logprobs,
    unsupported_reason,
)
from proxy.student_remote import RemoteStudent
from retrain.slots import Slots, delexicalize_messages, read_slots, relexicalize
from retrain.students import Prompt, load_student, prompt_ids, student_dir

if TYPE_CHECKING:  # torch loads with the first student, not with the proxy
    from proxy.decoding import Step

log = logging.getLogger("proxy.students")

_CLOSE = object()  # inbox sentinel: the worker stops after it
_Event = Piece | Ending | StudentError


@dataclass
class BatchStats:
    """What the worker did: batch sizes seen (a Counter of size -> batches)."""

    sizes: Counter[int]

    @property
    def largest(self) -> int:
        return max(self.sizes, default=0)


class _Request:
    """One request as the worker sees it; `post` hands events back to the event loop."""

    def __init__(self, payload: dict[str, Any], limit: int, slots: Slots | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.conversation = Prompt.from_chat(payload["messages"])
        self.values: list[str] | None = None  # what fills the student's slots, when it has them
        if slots is not None:
            messages, self.values = delexicalize_messages(self.conversation.messages, slots)
            self.conversation = Prompt(messages, self.conversation.tools)
        self.max_new = max_new_tokens(payload, limit)
        self.top_k = requested_top_logprobs(payload) or 0
        self.prompt: list[int] = []
        self.ids: list[int] = []  # generated so far
        self.emitted = 0  # characters of decoded text already sent
        self.cancelled = False  # set on the loop when the consumer goes away

    def post(self, event: _Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True


class InProcessStudent:
    """One student version answering OpenAI chat requests under its route's name."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        version: int,
        settings: StudentSettings | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.slots = slots
        self.name = name
        self.version = version
        self.settings = settings or StudentSettings()
        self.stats = BatchStats(Counter())
        generation_eos = getattr(model.generation_config, "eos_token_id", None)
        eos = generation_eos if isinstance(generation_eos, list) else [generation_eos]
        self._eos = {i for i in [tokenizer.eos_token_id, *eos] if i is not None}
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self._token_text: dict[int, str] = {}
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"student-{name}-v{version}")
        self._thread.daemon = True
        self._thread.start()

    @classmethod
    def load(
        cls, student_dir: Path, *, name: str, version: int, settings: StudentSettings | None = None
    ) -> InProcessStudent:
        """Load a registered student folder (blocking: call it off the event loop)."""
        settings = settings or StudentSettings()
        model, tokenizer = load_student(student_dir, merge=True, device=settings.device)
        slots = read_slots(student_dir)
        return cls(model, tokenizer, name=name, version=version, settings=settings, slots=slots)

    def supports(self, payload: dict[str, Any]) -> str | None:
        """None when this student can serve `payload`, else why not (see unsupported_reason)."""
        return unsupported_reason(payload)

    async def complete(self, payload: dict[str, Any]) -> StudentResult:
        """The whole answer; raises StudentError when the student cannot give one."""
        transcript = Transcript(payload, self.name)
        return await collect(transcript, self._events(payload))

    def stream(self, payload: dict[str, Any]) -> StudentStream:
        """The answer as chat.completion.chunk dicts (`async for`); `.result` at the end."""
        return StudentStream(Transcript(payload, self.name), self._events(payload))

    def close(self) -> None:
        """Stop the worker; queued and in-flight requests get StudentError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.put(_CLOSE)
        self._thread.join(timeout=10)

    async def _events(self, payload: dict[str, Any]) -> AsyncIterator[Piece | Ending]:
        reason = self.supports(payload)
        if reason is not None:
            raise StudentError(f"this student cannot serve the request ({reason})")
        request = _Request(payload, self.settings.max_tokens, self.slots)
        with self._lock:
            if self._closed:
                raise StudentError(f"student {self.name} v{self.version} is closed")
            self._inbox.put(request)
        try:
            while True:
                event = await request.events.get()
                if isinstance(event, StudentError):
                    raise event
                yield event
                if isinstance(event, Ending):
                    return
        finally:
            request.cancelled = True  # a consumer that left frees its batch slot

    # --- worker thread --------------------------------------------------------------------

    def _work(self) -> None:
        import torch

        # Process-wide in torch; set here so it holds before this thread's first forward.
        torch.set_num_threads(self.settings.num_threads)
        while (batch := self._take_batch()) is not None:
            self._serve(batch)
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, _Request):
                item.post(StudentError(f"student {self.name} v{self.version} was closed"))

    def _take_batch(self) -> list[_Request] | None:
        """The first waiting request plus whoever arrives within the window, or None on close."""
        first = self._inbox.get()
        if first is _CLOSE:
            return None
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_window_ms / 1000
        while len(batch) < self.settings.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else self._inbox.get_nowait()
                )
            except queue.Empty:
                break
            if item is _CLOSE:
                self._inbox.put(_CLOSE)  # seen again by the next _take_batch
                break
            batch.append(item)
        return batch

    def _serve(self, batch: list[_Request]) -> None:
        ready = [r for r in batch if not r.cancelled and self._prepare(r)]
        if not ready:
            return
        from proxy.decoding import Row, greedy_decode

        self.stats.sizes[len(ready)] += 1
        rows = [Row(r.prompt, r.max_new, r.top_k) for r in ready]
        try:
            reasons = greedy_decode(
                self.model,
                rows,
                self._eos,
                self._pad,
                lambda i, step: self._on_step(ready[i], step),
                lambda: self._closed,
            )
        except Exception as exc:  # must reach the waiting callers, not kill us
            log.exception("student %s v%s failed to generate", self.name, self.version)
            for r in ready:
                r.post(StudentError(f"student generation failed: {exc}"))
            return
        for request, reason in zip(ready, reasons, strict=True):
            self._finish(request, reason)

    def _prepare(self, request: _Request) -> bool:
        """Tokenise the prompt (here, not on the loop); False when it cannot be."""
        try:
            ids = prompt_ids(self.tokenizer, request.conversation)
        except Exception as exc:  # a bad conversation fails only its request
            request.post(StudentError(f"the student could not render the prompt: {exc}"))
            return False
        # Keep the end of a long conversation (the latest words) and room for the answer.
        room = max(1, self._max_positions - request.max_new)
        request.prompt = ids[-room:]
        return True

    def _on_step(self, request: _Request, step: Step) -> bool:
        if request.cancelled:
            return False
        request.ids.append(step.token_id)
        entry = logprob_entry(
            self._token(step.token_id),
            step.logprob,
            [(self._token(t), lp) for t, lp in step.top],
        )
        try:
            text = self._new_text(request, final=False)
        except StudentError as exc:  # a bad slot fails its request only
            request.post(exc)
            request.cancelled = True
            return False
        request.post(Piece(text, [entry]))
        return True

    def _finish(self, request: _Request, reason: str) -> None:
        if reason == "cancelled":
            if self._closed:
                request.post(StudentError(f"student {self.name} v{self.version} was closed"))
            return
        try:
            tail = self._new_text(request, final=True)
        except StudentError as exc:
            request.post(exc)
            return
        if tail:
            request.post(Piece(tail))
        request.post(Ending(reason, len(request.prompt), len(request.ids)))

    def _new_text(self, request: _Request, final: bool) -> str:
        """Text added since the last call; a split multi-byte character waits for its end, and
        so does a slot marker split over tokens. Raises StudentError for a marker naming a slot
        the prompt does not have."""
        text: str = self.tokenizer.decode(request.ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return ""
        if request.values is not None:
            if not final and text.rfind("⟦") > text.rfind("⟧"):
                text = text[: text.rfind("⟦")]
            filled = relexicalize(text, request.values)
            if filled is None:
                raise StudentError("the student wrote a slot the prompt does not have")
            text = filled
        delta = text[request.emitted :]
        request.emitted = len(text)
        return delta

    def _token(self, token_id: int) -> str:
        if token_id not in self._token_text:
            self._token_text[token_id] = self.tokenizer.decode([token_id])
        return self._token_text[token_id]


class StudentPool:
    """In-process students of a data_dir, keyed by (route, version), loaded on first use."""

    def __init__(
        self,
        data_dir: Path,
        settings: StudentSettings | None = None,
        remotes: dict[str, Callable[[int], RemoteStudent]] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings or StudentSettings()
        self._students: dict[tuple[str, int], InProcessStudent] = {}
        self._loading: dict[tuple[str, int], asyncio.Lock] = {}
        self._remotes = remotes or {}  # route -> factory of its remote students by version
        self._remote_students: dict[tuple[str, int], RemoteStudent] = {}

    async def get(self, route: str, version: int) -> InProcessStudent | RemoteStudent:
        """The student, loading an in-process one off the event loop the first time; routes
        with a student_api_base are answered by that server instead."""
        if route in self._remotes:
            key = (route, version)
            if key not in self._remote_students:
                self._remote_students[key] = self._remotes[route](version)
            return self._remote_students[key]
        key = (route, version)
        if key in self._students:
            return self._students[key]
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:  # two first requests load it once
            if key not in self._students:
                self._students[key] = await asyncio.to_thread(self._load, route, version)
        return self._students[key]

    def _load(self, route: str, version: int) -> InProcessStudent:
        path = student_dir(self.data_dir, route, version)
        if not (path / "manifest.json").exists():
            raise StudentError(f"no registered student {route} v{version} in {path}")
        return InProcessStudent.load(path, name=route, version=version, settings=self.settings)

    def loaded(self) -> list[tuple[str, int]]:
        return sorted(self._students)

    async def unload(self, route: str, version: int) -> bool:
        """Close and forget one student; False when it was not loaded."""
        student = self._students.pop((route, version), None)
        self._loading.pop((route, version), None)
        if student is None:
            return False
        await asyncio.to_thread(student.close)
        return True

    async def close(self) -> None:
        for route, version in self.loaded():
            await self.unload(route, version)
