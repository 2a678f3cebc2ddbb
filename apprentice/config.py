"""Configuration: one TOML file, validated with pydantic, secrets from the environment.

This is the only module that reads the environment; it composes each stage's own settings
model (`proxy.settings`, `logbook.settings`, `store.settings`, `cluster.settings`,
`curation.settings`,
`retrain.settings`, `canary.settings`, `monitoring.settings`), and each stage receives its part
as arguments.

- A value written as ``"env:NAME"`` is read from the environment variable NAME; a missing one
  is an error that names the key.
- ``APPRENTICE_<SECTION>__<FIELD>`` (or ``APPRENTICE_<FIELD>`` for top-level fields) overrides
  a value from the file, e.g. ``APPRENTICE_SERVER__PORT=9000``.
- Unknown keys are an error that names the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canary.settings import CanarySettings
from cluster.settings import ClusterSettings
from curation.settings import CurationSettings
from logbook.settings import LogbookSettings
from monitoring.settings import DriftSettings
from proxy.settings import ProxySettings, RouteSettings, ServerSettings, StudentSettings
from retrain.settings import RetrainSettings
from store.settings import StoreSettings
from store.store import open_store

ENV_PREFIX = "APPRENTICE_"
MOVED_FROM_CANARY = ("confidence_floor", "student_timeout_s")
# Set for every entry point before litellm or transformers is imported: apprentice works
# offline (litellm would fetch its price table, transformers would try the hub).
OFFLINE_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class ConfigError(Exception):
    """The configuration cannot be used; the message is one sentence naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteConfig(RouteSettings):
    """One ``[[routes]]`` entry: the proxy's fields, then a section per later stage."""

    curation: CurationSettings = Field(default_factory=CurationSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        # Serving settings that lived under [routes.canary] until the canary became a stage
        # of its own: say where they went instead of only calling them unknown.
        canary = data.get("canary") if isinstance(data, dict) else None
        for key in MOVED_FROM_CANARY:
            if isinstance(canary, dict) and key in canary:
                raise ValueError(
                    f"canary.{key} moved to the route itself: write {key} = ... under "
                    "[[routes]], not [routes.canary]"
                )
        return data

    def proxy_settings(self) -> RouteSettings:
        """The proxy's part of this route."""
        return RouteSettings.model_validate(
            {k: getattr(self, k) for k in RouteSettings.model_fields}
        )


class Config(_Strict):
    data_dir: Path = Field(
        Path("./apprentice-data"),
        description="This replica's hot data (logbook, journal, spill); also the shared store "
        "when [store] names none.",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    logbook: LogbookSettings = Field(default_factory=LogbookSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    students: StudentSettings = Field(default_factory=StudentSettings)
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

    @property
    def shared_dir(self) -> Path:
        """Where this process reads and writes the shared files (segments, datasets,
        students): the store's directory, or its local mirror of an object store."""
        return open_store(self.store, self.data_dir).root

    def proxy_settings(self) -> ProxySettings:
        """What the proxy is configured with."""
        return ProxySettings(
            data_dir=self.shared_dir,
            server=self.server,
            students=self.students,
            routes=[route.proxy_settings() for route in self.routes],
        )


def offline_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Default the offline switches in the environment (entry points call this first)."""
    env = os.environ if environ is None else environ
    for name, value in OFFLINE_DEFAULTS.items():
        env.setdefault(name, value)


def load_config(
    path: Path | str, environ: Mapping[str, str] | None = None, secrets_required: bool = True
) -> Config:
    """Read, resolve and validate the config file; raise ConfigError with one clear sentence.

    `secrets_required=False` is for commands that never use a key (stats, curate, ...): an
    unset `env:NAME` becomes an unusable placeholder instead of an error."""
    env = os.environ if environ is None else environ
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist; pass --config FILE.") from None
    except IsADirectoryError:
        raise ConfigError(f"Config file {path} is a directory; pass --config FILE.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}); save it as UTF-8."
        ) from None
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
    # Every command reads through the store (stats and curate too), so its keys are always
    # required, even where the other secrets may stay unset.
    store_env = env._env if isinstance(env, _PlaceholderEnv) else env
    resolved = _resolve_secrets({k: v for k, v in merged.items() if k != "store"}, env, path="")
    if "store" in merged:
        resolved["store"] = _resolve_secrets(merged["store"], store_env, path="store")
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_one_sentence(exc, source)) from None
    if base_dir is not None and not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (base_dir / config.data_dir).resolve()})
    if base_dir is not None and (url := _relative_store_path(config.store)) is not None:
        store = config.store.model_copy(update={"url": str((base_dir / url).resolve())})
        config = config.model_copy(update={"store": store})
    return config


def _relative_store_path(store: StoreSettings) -> Path | None:
    """The store's directory when it is a relative path (resolved like data_dir)."""
    if store.url is None or store.is_object_store or store.url.startswith("file://"):
        return None
    path = Path(store.url)
    return None if path.is_absolute() else path


def _resolve_secrets(value: Any, env: Mapping[str, str], path: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, env, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in env:
            raise ConfigError(
                f"Config key {path} reads the environment variable {name}, which is not set."
            )
        if not env[name].strip():
            raise ConfigError(
                f"Config key {path} reads the environment variable {name}, which is empty."
            )
        return env[name]
    return value


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """APPRENTICE_SECTION__FIELD overrides. Any other APPRENTICE_ variable is a ConfigError
    naming it (a typo would otherwise be ignored in silence), unless the config reads it as
    a secret (`env:APPRENTICE_API_KEY`)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    sections: dict[str, type[BaseModel]] = {
        "server": ServerSettings,
        "logbook": LogbookSettings,
        "store": StoreSettings,
        "cluster": ClusterSettings,
        "students": StudentSettings,
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
        elif name not in _secret_names(raw):
            raise ConfigError(
                f"The environment variable {name} is not a config override (they are "
                f"{ENV_PREFIX}<SECTION>__<FIELD>, e.g. {ENV_PREFIX}SERVER__PORT, for the "
                "sections server, logbook, store, cluster and students) and no config key "
                f"reads it as env:{name}; unset or rename it."
            )
    return out


def _secret_names(value: Any) -> set[str]:
    """The environment variables the config reads as `env:NAME`."""
    if isinstance(value, dict):
        return set().union(*map(_secret_names, value.values()))
    if isinstance(value, list):
        return set().union(*map(_secret_names, value))
    if isinstance(value, str) and value.startswith("env:"):
        return {value[4:]}
    return set()


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
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"Config error in {source}: {key}: {message}."


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
