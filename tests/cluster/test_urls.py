"""Which database a control URL names, and that its password never shows."""

from __future__ import annotations

import os

import pytest

from cluster.urls import parse_control_url


def test_sqlite_urls_and_plain_paths() -> None:
    url = parse_control_url("sqlite:///var/lib/apprentice/control.sqlite3")
    assert (url.dialect, url.target) == ("sqlite", "/var/lib/apprentice/control.sqlite3")
    plain = parse_control_url("data/control.sqlite3")
    assert plain.dialect == "sqlite" and plain.target == os.path.abspath("data/control.sqlite3")
    with pytest.raises(ValueError, match="absolute"):
        parse_control_url("sqlite://relative.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgres_password_is_masked(scheme: str) -> None:
    url = parse_control_url(f"{scheme}://app:s3cr%40t@db.internal:5433/control")
    assert url.dialect == "postgres"
    assert url.target == f"{scheme}://app:s3cr%40t@db.internal:5433/control"
    assert url.shown == f"{scheme}://app:***@db.internal:5433/control"
    assert "s3cr" not in repr(url)
    assert url.scrub("failed for s3cr@t and s3cr%40t") == "failed for *** and ***"


def test_a_password_parameter_is_masked_and_other_parameters_kept() -> None:
    url = parse_control_url("postgresql://app@db/control?sslmode=require&password=hunter%2B2")
    assert url.shown == "postgresql://app@db/control?sslmode=require&password=***"
    assert url.scrub("hunter+2 hunter%2B2") == "*** ***"
    bare = parse_control_url("postgresql://db/control")
    assert bare.shown == "postgresql://db/control" and bare.secrets == ()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("mysql://root:pw@db/x", "neither sqlite"),
        ("host=db password=pw dbname=x", "keyword form"),
        ("postgresql://app:pw@db:notaport/x", "cannot be parsed"),
    ],
)
def test_other_urls_are_refused_without_echoing_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_control_url(url)
    assert "pw" not in str(caught.value)
