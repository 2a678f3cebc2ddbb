"""The metrics reference in docs/metrics.md is the one the code generates."""

from __future__ import annotations

from pathlib import Path

from monitoring.docs import metric_docs, metrics_table, series_names

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_docs_table_matches_the_code() -> None:
    assert DOCS.read_text() == metrics_table(), (
        "docs/metrics.md is stale: run `python -m monitoring.docs > docs/metrics.md` "
        "and paste the table into the README"
    )


def test_every_metric_is_documented_and_named_by_convention() -> None:
    docs = metric_docs()
    assert len({d.name for d in docs}) == len(docs)
    for doc in docs:
        assert doc.name.startswith("apprentice_"), doc.name
        assert doc.help.strip(), f"{doc.name} has no help text"
        assert (doc.type == "counter") == doc.name.endswith("_total"), doc.name
        assert not {"request_id", "id", "key", "session"} & set(doc.labels), doc.name


def test_series_names_include_sample_suffixes() -> None:
    names = series_names()
    assert {
        "apprentice_requests_total",
        "apprentice_requests_created",
        "apprentice_request_duration_seconds_bucket",
        "apprentice_request_duration_seconds_count",
        "apprentice_drift_score",
    } <= names
    assert "apprentice_requests" not in names
