"""The README's metrics table is the one generated from the code."""

from __future__ import annotations

from pathlib import Path

from monitoring.docs import metrics_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metrics_table_matches_the_code() -> None:
    text = README.read_text()
    start = text.index("<!-- METRICS -->") + len("<!-- METRICS -->")
    end = text.index("<!-- /METRICS -->")
    assert text[start:end].strip() == metrics_table().strip(), (
        "README metrics table is stale: run `python -m monitoring.docs` and paste it between "
        "the METRICS markers"
    )
