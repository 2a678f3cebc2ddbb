from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rich.console import Console

from curation.report import ClusterRow, CurationResult, StageReport, render_report, result_to_json


def result() -> CurationResult:
    return CurationResult(
        "r",
        "written",
        "Wrote dataset v3",
        version=3,
        path=Path("/d/v3"),
        stages=[
            StageReport.of("quality", 10, 7, Counter({"refusal": 2, "error": 1}), Counter()),
            StageReport.of("scrub", 7, 7, Counter(), Counter({"email": 2})),
        ],
        clusters=[ClusterRow("c0", None, 90, 20, 1.0, "translate this")],
        counts={"train": 6, "eval": 1},
        skipped=[{"request_id": "bad", "reason": "malformed_row"}],
    )


def test_the_report_shows_every_stage_and_why_rows_went() -> None:
    console = Console(width=160, record=True)
    console.print(render_report(result()))
    text = console.export_text()
    assert "Wrote dataset v3" in text
    assert "error: 1, refusal: 2" in text and "changed email: 2" in text
    assert "translate this" in text and "bad (malformed_row)" in text


def test_the_json_form_is_plain_json() -> None:
    data = json.loads(json.dumps(result_to_json(result())))
    assert data["status"] == "written" and data["version"] == 3 and data["path"] == "/d/v3"
    assert data["stages"][0] == {
        "name": "quality",
        "rows_in": 10,
        "rows_out": 7,
        "dropped": {"error": 1, "refusal": 2},
        "changed": {},
    }
