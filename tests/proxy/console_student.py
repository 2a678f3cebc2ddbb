"""A registered student as the retrain job leaves it on disk (manifest, eval report, training
history) and the dataset it learned from, for the console tests: the console only reads these
files, and the canary controls never load the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORST = [
    {
        "prompt": "Refund for order 8812 please, charged twice",
        "teacher": '{"intent": "refund", "priority": "high"}',
        "student": '{"intent": "billing", "priority": "high"}',
    },
    {
        "prompt": "Where is Zanele's parcel? Tracking shows nothing",
        "teacher": '{"intent": "shipping", "priority": "normal"}',
        "student": '{"intent": "shipping", "priority": "low"}',
    },
]


def _curve(shift: float) -> list[list[float]]:
    return [[c / 10, round(min(1.0, 1.0 - (c / 10) ** 3 * shift), 3)] for c in range(1, 11)]


def eval_report() -> dict[str, Any]:
    slice_in = {
        "n": 160,
        "exact_match": 0.94,
        "token_f1": 0.98,
        "json_valid": 1.0,
        "length_ratio": 1.01,
        "latency_p50_ms": 41.0,
        "worst": WORST,
    }
    slice_novel = {
        "n": 40,
        "exact_match": 0.71,
        "token_f1": 0.9,
        "json_valid": 1.0,
        "length_ratio": 1.03,
        "latency_p50_ms": 43.0,
        "worst": WORST[1:],
    }
    return {
        "metrics": {"student": {k: v for k, v in slice_in.items() if k != "worst"}},
        "gate": {"passed": True, "reasons": []},
        "slices": {"in_distribution": slice_in, "novel": slice_novel},
        "cascade": {
            "signal": "min_logprob",
            "threshold": -0.42,
            "target_agreement": 0.97,
            "coverage": 0.8,
            "agreement": 0.975,
            "curves": {"min_logprob": _curve(0.12), "mean_logprob": _curve(0.3)},
        },
    }


def write_student(data_dir: Path, route: str, version: int, status: str = "candidate") -> None:
    folder = data_dir / "students" / route / f"v{version}"
    folder.mkdir(parents=True)
    report = eval_report()
    manifest = {
        "version": version,
        "route": route,
        "status": status,
        "created_at": "2026-12-06T10:00:00+00:00",
        "base": "tiny",
        "method": "full",
        "dataset_version": 1,
        "metrics": report["metrics"],
        "gate": report["gate"],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "eval.json").write_text(json.dumps(report))
    history = [
        {"step": float(s), "train_loss": round(3.2 * 0.985**s + 0.05, 4)} for s in range(0, 400, 20)
    ]
    history += [
        {"step": float(s), "eval_loss": round(3.0 * 0.985**s + 0.08, 4)} for s in range(0, 400, 100)
    ]
    (folder / "history.json").write_text(json.dumps(history))
    dataset = data_dir / "datasets" / route / "v1"
    dataset.mkdir(parents=True, exist_ok=True)
    stages = [
        {"name": "select", "rows_in": 1500, "rows_out": 1500, "dropped": {}, "changed": {}},
        {
            "name": "quality",
            "rows_in": 1500,
            "rows_out": 1462,
            "dropped": {"error": 21, "refusal": 17},
            "changed": {},
        },
        {
            "name": "scrub",
            "rows_in": 1462,
            "rows_out": 1462,
            "dropped": {},
            "changed": {"email": 88, "phone": 31},
        },
        {
            "name": "dedupe",
            "rows_in": 1462,
            "rows_out": 1210,
            "dropped": {"exact": 190, "near": 62},
            "changed": {},
        },
    ]
    (dataset / "manifest.json").write_text(
        json.dumps(
            {
                "version": 1,
                "route": route,
                "created_at": "2026-12-06T09:58:00+00:00",
                "counts": {"train": 1010, "eval": 200, "eval_novel": 40},
                "stages": stages,
            }
        )
    )
