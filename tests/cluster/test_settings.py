"""The [cluster] settings: a control URL that is a secret, checked but never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.settings import ClusterSettings


def test_defaults_are_the_embedded_control_plane() -> None:
    settings = ClusterSettings()
    assert settings.control_url is None
    assert settings.lease_ttl_s > settings.poll_interval_s > 0


def test_the_url_is_a_secret() -> None:
    settings = ClusterSettings.model_validate(
        {"control_url": "postgresql://app:hunter2@db:5432/control"}
    )
    assert settings.control_url is not None
    assert settings.control_url.get_secret_value().endswith("@db:5432/control")
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in shown


def test_a_bad_url_or_unknown_key_is_refused_without_the_password() -> None:
    with pytest.raises(ValidationError) as caught:
        ClusterSettings.model_validate({"control_url": "mysql://app:hunter2@db/control"})
    assert "neither sqlite" in str(caught.value)
    assert "hunter2" not in str(caught.value) + repr(caught.value)
    assert all("hunter2" not in str(e["msg"]) for e in caught.value.errors())
    with pytest.raises(ValidationError, match="extra"):
        ClusterSettings.model_validate({"control_uri": "x"})
    with pytest.raises(ValidationError):
        ClusterSettings(lease_ttl_s=0)
