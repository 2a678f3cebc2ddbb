"""`[store]` settings: a path, file:// or s3://; object-store options only with s3://."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from store.settings import StoreSettings


def test_default_is_no_url_and_a_directory_store() -> None:
    settings = StoreSettings()
    assert settings.url is None and not settings.is_object_store


@pytest.mark.parametrize("url", ["/mnt/efs/apprentice", "shared", "file:///srv/store"])
def test_paths_are_directory_stores(url: str) -> None:
    assert not StoreSettings(url=url).is_object_store


def test_s3_with_endpoint_and_keys() -> None:
    settings = StoreSettings(
        url="s3://bucket/prefix",
        endpoint_url="http://127.0.0.1:9000",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="very-secret-value",
    )
    assert settings.is_object_store
    assert "very-secret-value" not in repr(settings) + str(settings)
    assert "AKIAEXAMPLE" not in repr(settings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "gs://bucket"}, "scheme gs:// is not supported"),
        ({"url": "s3://"}, "names no bucket"),
        ({"url": " "}, "is empty"),
        ({"url": "/srv", "endpoint_url": "http://h:1"}, "endpoint_url applies to an s3:// url"),
        ({"url": "s3://b", "endpoint_url": "ftp://h"}, "must be http://host:port"),
        ({"url": "s3://b", "access_key_id": "k"}, "set both access_key_id and secret_access_key"),
    ],
)
def test_bad_settings_say_what_to_do(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StoreSettings(**fields)  # type: ignore[arg-type]


def test_a_url_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        StoreSettings(url="s3://bucket/x", endpoint_url="http://user:hunter2@127.0.0.1:9000")
    errors = refused.value.errors(include_input=False, include_url=False)
    assert "must not hold credentials" in errors[0]["msg"]
    assert "hunter2" not in str(errors)
