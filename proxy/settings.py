"""The proxy's own settings: ``[server]``, ``[students]`` and its part of each ``[[routes]]``.

The configuration (`apprentice.config`) composes these with the other stages' sections; the
proxy receives them as arguments and never reads the environment itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys clients present as Bearer tokens; an empty list leaves the proxy open.",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for /admin/*; without it the admin API is disabled."
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above it)."
    )
    default_route: str | None = Field(
        None,
        description="Route for pass-through calls that name no model (file uploads, GET "
        "/v1/responses/{id}); null: the only route when there is one.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A client must send a request's headers within this (slowloris)."
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="A client must send a request's body within this (408 beyond)."
    )
    graceful_shutdown_s: float = Field(
        30.0, gt=0, description="How long SIGTERM waits for in-flight requests."
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_are_not_empty(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(not k.get_secret_value().strip() for k in keys):
            raise ValueError(
                "an empty key would let any client in; remove it (an empty list leaves the "
                "proxy open, with a warning) or set a real key"
            )
        return keys

    @field_validator("admin_token")
    @classmethod
    def _token_is_not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            raise ValueError(
                "an empty admin token would open the admin API to anyone; remove it to "
                "disable the admin API, or set a real token"
            )
        return token


class StudentSettings(_Strict):
    """How in-process students serve (all routes of this server)."""

    num_threads: int = Field(1, ge=1, le=64, description="torch threads for generation.")
    batch_window_ms: float = Field(
        2.0, ge=0, le=1000, description="How long a request waits for others to batch with."
    )
    max_batch_size: int = Field(16, ge=1, le=256, description="Requests decoded together.")
    max_tokens: int = Field(256, ge=1, description="Cap on (and default of) max_tokens.")
    device: str | None = Field(
        None, description="torch device for students (null: CUDA when present, else CPU)."
    )


class RouteSettings(_Strict):
    """One route as the proxy serves it: its teacher, capture, and how students answer."""

    name: str = Field(description="The `model` clients send; also the route's folder name.")
    teacher: str = Field(description="The teacher as a litellm model string, e.g. openai/gpt-4o.")
    teacher_api_base: str | None = Field(None, description="Base URL of the teacher's API.")
    teacher_api_key: SecretStr | None = Field(None, description="The teacher's key (env:NAME).")
    upstream: Literal["auto", "passthrough", "litellm"] = Field(
        "auto",
        description="auto: byte pass-through for openai/* teachers, litellm for the rest.",
    )
    any_model: bool = Field(
        False, description="Serve any unknown `model` name through this route's teacher."
    )
    capture: bool = Field(True, description="Log this route's calls to the logbook.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Teacher connect timeout.")
    read_timeout_s: float = Field(600.0, gt=0, description="Longest wait for the next byte.")
    total_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for a whole non-streamed answer (headers+body)."
    )
    max_response_bytes: int = Field(
        32 * 1024 * 1024,
        gt=0,
        description="Largest teacher answer relayed (a 502 beyond; a stream is cut with an "
        "error event).",
    )
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429/5xx before first byte.")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each try.")
    capture_top_logprobs: int = Field(
        0,
        ge=0,
        le=20,
        description="Ask the teacher for this many top logprobs for distillation (0: off); "
        "they are stored and stripped from the client's response when it did not ask.",
    )
    student_api_base: str | None = Field(
        None,
        description="Serve this route's students from this OpenAI-compatible URL (vLLM with "
        "--enable-lora, LoRAX) instead of in-process.",
    )
    student_api_key: SecretStr | None = Field(None, description="Key for student_api_base.")
    student_model: str = Field(
        "{route}-v{version}",
        description="The model name the remote server knows a student by ({route}, {version}).",
    )
    student_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a student may take before the teacher answers."
    )
    confidence_floor: float | None = Field(
        -1.0,
        le=0,
        description="Mean token logprob below which the teacher answers instead (-inf: off).",
    )
    cascade: bool = Field(
        True,
        description="Apply each student's calibrated cascade rule (its eval.json): an answer "
        "below the rule's confidence threshold goes to the teacher (counted low_confidence).",
    )
    cascade_signal: (
        Literal["mean_logprob", "min_logprob", "value_mean_logprob", "value_min_logprob"] | None
    ) = Field(
        None,
        description="Override the students' rules: the confidence signal to judge answers by "
        "(with cascade_threshold).",
    )
    cascade_threshold: float | None = Field(
        None,
        le=0,
        description="Override the students' rules: serve an answer whose signal is at least "
        "this (with cascade_signal).",
    )
    passthrough_body_limit: int = Field(
        65_536,
        ge=0,
        description="Pass-through calls (embeddings, files, ...): JSON bodies up to this many "
        "bytes are kept in the row; larger and binary ones are not (legacy completions, "
        "training pairs, always are).",
    )
    input_cost_per_mtok: float | None = Field(
        None, ge=0, description="Override the price table: USD per million prompt tokens."
    )
    output_cost_per_mtok: float | None = Field(
        None, ge=0, description="Override the price table: USD per million completion tokens."
    )

    @field_validator("teacher_api_key", "student_api_key")
    @classmethod
    def _key_is_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError(
                "an empty key is no key: remove it for a provider that needs none, or set a "
                "real one"
            )
        return key

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value):
            raise ValueError(
                "route names use letters, digits, '.', '_' and '-' (they name folders)"
            )
        return value

    @model_validator(mode="after")
    def _override_is_whole(self) -> RouteSettings:
        if (self.cascade_signal is None) != (self.cascade_threshold is None):
            raise ValueError("cascade_signal and cascade_threshold override a rule together")
        return self

    @property
    def passthrough(self) -> bool:
        """True when the teacher is OpenAI-compatible and bytes are forwarded as they are."""
        if self.upstream == "auto":
            return self.teacher.startswith("openai/")
        return self.upstream == "passthrough"

    @property
    def upstream_model(self) -> str:
        """The model name the teacher's API expects (the litellm provider prefix removed)."""
        return self.teacher.split("/", 1)[1] if "/" in self.teacher else self.teacher


class ProxySettings(_Strict):
    """Everything the proxy is configured with."""

    data_dir: Path = Field(description="Where the registry's students live (students/).")
    server: ServerSettings = Field(default_factory=ServerSettings)
    students: StudentSettings = Field(default_factory=StudentSettings)
    routes: list[RouteSettings] = Field(default_factory=list)
