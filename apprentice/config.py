"""Configuration: one TOML file, validated with pydantic, secrets from the environment.

This is the only module that reads the environment. Everything else receives a `Config`.

- A value written as ``"env:NAME"`` is read from the environment variable NAME; a missing one
  is an error that names the key.
- ``APPRENTICE_<SECTION>__<FIELD>`` (or ``APPRENTICE_<FIELD>`` for top-level fields) overrides
  a value from the file, e.g. ``APPRENTICE_SERVER__PORT=9000``.
- Unknown keys are an error that names the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from curation.settings import CurationSettings
from monitoring.settings import CanarySettings, DriftSettings
from retrain.settings import RetrainSettings

ENV_PREFIX = "APPRENTICE_"
ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message is one sentence naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
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
    graceful_shutdown_s: float = Field(
        30.0, gt=0, description="How long SIGTERM waits for in-flight requests."
    )


class LogbookConfig(_Strict):
    flush_interval_ms: int = Field(100, ge=1, le=60_000, description="Writer batch interval.")
    queue_size: int = Field(
        50_000, ge=1, description="Rows held in memory before overflow goes to the spill file."
    )
    seal_interval_s: float = Field(
        60.0, gt=0, description="How often committed rows are sealed into Parquet segments."
    )


class StudentsConfig(_Strict):
    """How in-process students serve (all routes of this server)."""

    num_threads: int = Field(1, ge=1, le=64, description="torch threads for generation.")
    batch_window_ms: float = Field(
        2.0, ge=0, le=1000, description="How long a request waits for others to batch with."
    )
    max_batch_size: int = Field(16, ge=1, le=256, description="Requests decoded together.")
    max_tokens: int = Field(256, ge=1, description="Cap on (and default of) max_tokens.")


class RouteConfig(_Strict):
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
    input_cost_per_mtok: float | None = Field(
        None, ge=0, description="Override the price table: USD per million prompt tokens."
    )
    output_cost_per_mtok: float | None = Field(
        None, ge=0, description="Override the price table: USD per million completion tokens."
    )
    curation: CurationSettings = Field(default_factory=CurationSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value):
            raise ValueError(
                "route names use letters, digits, '.', '_' and '-' (they name folders)"
            )
        return value

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


class Config(_Strict):
    data_dir: Path = Field(Path("./apprentice-data"), description="Logbook, datasets, students.")
    server: ServerConfig = Field(default_factory=ServerConfig)
    logbook: LogbookConfig = Field(default_factory=LogbookConfig)
    students: StudentsConfig = Field(default_factory=StudentsConfig)
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("routes")
    @classmethod
    def _unique_names(cls, routes: list[RouteConfig]) -> list[RouteConfig]:
        seen: set[str] = set()
        for route in routes:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} appears twice")
            seen.add(route.name)
        return routes

    def route(self, name: str) -> RouteConfig:
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(r.name for r in self.routes) or "none"
        raise ConfigError(f"Unknown route {name!r}; configured routes: {known}.")


def load_config(
    path: Path | str, environ: Mapping[str, str] | None = None, secrets_required: bool = True
) -> Config:
    """Read, resolve and validate the config file; raise ConfigError with one clear sentence.

    `secrets_required=False` is for commands that never use a key (stats, curate, ...): an
    unset `env:NAME` becomes an unusable placeholder instead of an error."""
    env = os.environ if environ is None else environ
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist; pass --config FILE.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None
    if not secrets_required:
        env = _PlaceholderEnv(env)
    return config_from_dict(raw, env, source=str(path), base_dir=path.parent)


class _PlaceholderEnv(Mapping[str, str]):
    """The environment, answering `<unset NAME>` for variables that are not set."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, name: str) -> str:
        return self._env.get(name) or f"<unset {name}>"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def config_from_dict(
    raw: dict[str, Any],
    environ: Mapping[str, str] | None = None,
    source: str = "config",
    base_dir: Path | None = None,
) -> Config:
    """Validate an already parsed config (tests and the demo build configs in code)."""
    env = os.environ if environ is None else environ
    merged = _apply_env_overrides(raw, env)
    resolved = _resolve_secrets(merged, env, path="")
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_one_sentence(exc, source)) from None
    if base_dir is not None and not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (base_dir / config.data_dir).resolve()})
    return config


def _resolve_secrets(value: Any, env: Mapping[str, str], path: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, env, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in env or env[name] == "":
            raise ConfigError(
                f"Config key {path} reads the environment variable {name}, which is not set."
            )
        return env[name]
    return value


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """APPRENTICE_SECTION__FIELD overrides; names that are not config fields are ignored."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    sections: dict[str, type[BaseModel]] = {
        "server": ServerConfig,
        "logbook": LogbookConfig,
        "students": StudentsConfig,
    }
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 1 and parts[0] in Config.model_fields and parts[0] != "routes":
            out[parts[0]] = value
        elif len(parts) == 2 and parts[1] in _fields(sections.get(parts[0])):
            section = out.setdefault(parts[0], {})
            if isinstance(section, dict):
                section[parts[1]] = _env_value(value)
    return out


def _fields(section: type[BaseModel] | None) -> set[str]:
    return set() if section is None else set(section.model_fields)


def _env_value(value: str) -> Any:
    if value.startswith("["):
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    return value


def _one_sentence(exc: ValidationError, source: str) -> str:
    # An unknown key usually explains the other errors (a typo leaves a field missing).
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    key = _dotted(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"Config error in {source}: unknown key {key!r}."
    if err["type"] == "missing":
        return f"Config error in {source}: {key} is required."
    return f"Config error in {source}: {key}: {err['msg']}."


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
