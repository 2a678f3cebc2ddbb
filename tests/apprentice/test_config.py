"""Config: validated at start, one clear sentence naming the key when something is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from apprentice.config import ConfigError, config_from_dict, load_config

ROUTE = {"name": "r", "teacher": "openai/gpt-4o-mini", "teacher_api_key": "env:OPENAI_KEY"}


def test_example_config_documents_a_valid_file() -> None:
    env = {"APPRENTICE_API_KEY": "sk-c1", "APPRENTICE_ADMIN_TOKEN": "a", "OPENAI_API_KEY": "o"}
    config = load_config(Path(__file__).parents[2] / "apprentice.example.toml", env)
    assert config.routes[0].name == "support-triage"
    assert config.routes[0].passthrough
    assert config.server.api_keys[0].get_secret_value() == "sk-c1"
    assert "sk-c1" not in repr(config) + str(config)  # secrets never print


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'routes\[0\].tecaher'"):
        config_from_dict({"routes": [{"name": "r", "tecaher": "x"}]}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'server\.prot'"):
        config_from_dict({"server": {"prot": 1}}, {})


def test_missing_secret_names_key_and_variable_but_no_value() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"routes": [ROUTE]}, {})
    assert str(err.value) == (
        "Config key routes[0].teacher_api_key reads the environment variable OPENAI_KEY, "
        "which is not set."
    )


def test_env_overrides_and_bad_values() -> None:
    env = {"OPENAI_KEY": "sk", "APPRENTICE_SERVER__PORT": "9123"}
    config = config_from_dict({"routes": [ROUTE]}, env)
    assert config.server.port == 9123
    with pytest.raises(ConfigError, match=r"server\.port"):
        config_from_dict({"server": {"port": 70000}}, {})
    with pytest.raises(ConfigError, match=r"appears twice"):
        config_from_dict({"routes": [ROUTE, ROUTE]}, env)
    with pytest.raises(ConfigError, match=r"folders"):
        config_from_dict({"routes": [ROUTE | {"name": "a/b"}]}, env)
    with pytest.raises(ConfigError, match=r"routes\[0\].teacher is required"):
        config_from_dict({"routes": [{"name": "r"}]}, env)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("data_dir = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('data_dir = "data"\n')
    assert load_config(path, {}).data_dir == tmp_path / "data"


def test_litellm_routes_are_not_passthrough() -> None:
    config = config_from_dict(
        {"routes": [{"name": "c", "teacher": "anthropic/claude-3-5-haiku"}]}, {}
    )
    assert not config.routes[0].passthrough
    assert config.routes[0].upstream_model == "claude-3-5-haiku"


def test_example_config_documents_every_field() -> None:
    from apprentice.config import RouteConfig
    from canary.settings import CanarySettings
    from curation.settings import CurationSettings
    from logbook.settings import LogbookSettings
    from monitoring.settings import DriftSettings
    from proxy.settings import ServerSettings, StudentSettings
    from retrain.settings import AugmentSettings, RetrainSettings
    from store.settings import StoreSettings

    text = (Path(__file__).parents[2] / "apprentice.example.toml").read_text()
    models = (ServerSettings, LogbookSettings, StoreSettings, StudentSettings, RouteConfig,
              CurationSettings, RetrainSettings, AugmentSettings, CanarySettings,
              DriftSettings)  # fmt: skip
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if f"\n{name} =" not in text
        and f"\n# {name} =" not in text
        and f"[routes.{name}]" not in text
        and f"[routes.retrain.{name}]" not in text
    ]
    assert missing == []


def test_serving_settings_that_moved_out_of_the_canary_section_say_where_they_went() -> None:
    raw = {"routes": [{"name": "r", "teacher": "openai/x", "canary": {"confidence_floor": -2}}]}
    with pytest.raises(ConfigError, match=r"canary.confidence_floor moved to the route itself"):
        config_from_dict(raw, {})
    raw = {"routes": [{"name": "r", "teacher": "openai/x", "confidence_floor": -2.0}]}
    assert config_from_dict(raw, {}).routes[0].proxy_settings().confidence_floor == -2.0
    with pytest.raises(ConfigError, match=r"routes\[0\].confidence_floor"):
        config_from_dict({"routes": [raw["routes"][0] | {"confidence_floor": 0.5}]}, {})


def test_each_stage_gets_its_own_settings_from_the_config() -> None:
    raw = {
        "data_dir": "/tmp/d",
        "server": {"max_body_bytes": 1234},
        "routes": [{"name": "r", "teacher": "openai/x", "student_timeout_s": 3.0,
                    "canary": {"interval_s": 7.0}, "retrain": {"max_steps": 50}}],
    }  # fmt: skip
    config = config_from_dict(raw, {})
    proxy = config.proxy_settings()
    assert type(proxy.routes[0]).__name__ == "RouteSettings"  # the proxy's part only
    assert proxy.routes[0].student_timeout_s == 3.0 and proxy.server.max_body_bytes == 1234
    assert not hasattr(proxy.routes[0], "canary")
    assert config.routes[0].canary.interval_s == 7.0
    assert config.routes[0].retrain.max_steps == 50


def test_commands_that_use_no_key_load_the_config_without_secrets() -> None:
    path = Path(__file__).parents[2] / "apprentice.example.toml"
    config = load_config(path, {}, secrets_required=False)
    assert config.routes[0].name == "support-triage"
    assert config.server.api_keys[0].get_secret_value() == "<unset APPRENTICE_API_KEY>"
    with pytest.raises(ConfigError, match="APPRENTICE_API_KEY"):
        load_config(path, {})


@pytest.mark.parametrize(
    ("raw", "environ", "message"),
    [
        ({"server": {"admin_token": ""}}, {}, "empty admin token would open the admin API"),
        ({"server": {"admin_token": "   "}}, {}, "empty admin token would open the admin API"),
        ({}, {"APPRENTICE_SERVER__ADMIN_TOKEN": ""}, "empty admin token would open the admin API"),
        ({"server": {"api_keys": ["sk-real-key-1", ""]}}, {}, "empty key would let any client in"),
    ],
)
def test_empty_secrets_are_refused_with_one_sentence(
    raw: dict[str, object], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        config_from_dict(raw, environ)
    assert "Value error" not in str(refused.value)  # one plain sentence, no pydantic prefix


def test_no_store_section_keeps_everything_in_data_dir(tmp_path: Path) -> None:
    from store import Store, open_store

    config = config_from_dict({"data_dir": str(tmp_path)}, {})
    store = open_store(config.store, config.data_dir)
    assert type(store) is Store and store.root == tmp_path


def test_store_section_paths_env_overrides_and_errors(tmp_path: Path) -> None:
    toml = tmp_path / "apprentice.toml"
    toml.write_text('[store]\nurl = "shared"\n')
    assert load_config(toml, {}).store.url == str(tmp_path / "shared")  # beside the file
    env = {"APPRENTICE_STORE__URL": "s3://bucket/x", "APPRENTICE_STORE__REGION": "eu-west-1"}
    assert config_from_dict({}, env).store.region == "eu-west-1"
    with pytest.raises(ConfigError, match=r"store: endpoint_url applies to an s3:// url only"):
        config_from_dict({"store": {"url": "/srv", "endpoint_url": "http://h:1"}}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'store\.bucket'"):
        config_from_dict({"store": {"bucket": "b"}}, {})


def test_store_keys_are_secrets_and_required_even_by_read_commands(tmp_path: Path) -> None:
    toml = tmp_path / "apprentice.toml"
    toml.write_text(
        '[store]\nurl = "s3://bucket/x"\naccess_key_id = "env:S3_KEY"\n'
        'secret_access_key = "env:S3_SECRET"\n'
        '[server]\napi_keys = ["env:UNSET_CLIENT_KEY"]\n'
    )
    env = {"S3_KEY": "AKIAREALKEY", "S3_SECRET": "real-secret-value"}
    config = load_config(toml, env, secrets_required=False)  # client keys may stay unset
    assert config.store.secret_access_key is not None
    assert config.store.secret_access_key.get_secret_value() == "real-secret-value"
    assert "real-secret-value" not in repr(config) + str(config) + config.model_dump_json()
    with pytest.raises(ConfigError, match=r"store\.secret_access_key reads .* S3_SECRET, which"):
        load_config(toml, {"S3_KEY": "k"}, secrets_required=False)


def test_an_unknown_apprentice_variable_is_refused_by_name_unless_the_config_reads_it() -> None:
    for name in ("APPRENTICE_SERVER__PROT", "APPRENTICE_PORT", "APPRENTICE_ROUTES__0__NAME"):
        with pytest.raises(ConfigError, match=f"environment variable {name} is not a config"):
            config_from_dict({"routes": [ROUTE]}, {"OPENAI_KEY": "sk", name: "9000"})
    read = {"server": {"api_keys": ["env:APPRENTICE_API_KEY"]}, "routes": [ROUTE]}
    config = config_from_dict(read, {"OPENAI_KEY": "sk", "APPRENTICE_API_KEY": "sk-client-1"})
    assert config.server.api_keys[0].get_secret_value() == "sk-client-1"


def test_an_empty_teacher_key_and_an_empty_env_secret_are_refused_as_empty() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.teacher_api_key: an empty key is no key"):
        config_from_dict({"routes": [ROUTE | {"teacher_api_key": ""}]}, {})
    with pytest.raises(ConfigError, match=r"routes\[0\]\.student_api_key: an empty key"):
        config_from_dict({"routes": [ROUTE | {"student_api_key": " "}]}, {"OPENAI_KEY": "sk"})
    with pytest.raises(ConfigError, match="variable OPENAI_KEY, which is empty") as empty:
        config_from_dict({"routes": [ROUTE]}, {"OPENAI_KEY": ""})
    assert "not set" not in str(empty.value)
    with pytest.raises(ConfigError, match="variable OPENAI_KEY, which is not set"):
        config_from_dict({"routes": [ROUTE]}, {})


def test_a_config_that_is_not_utf8_is_one_sentence(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('data_dir = "donn\u00e9es"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset 16\)"):
        load_config(latin)
