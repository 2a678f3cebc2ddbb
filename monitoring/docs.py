"""The metrics reference, generated from `Metrics` so the README table cannot go stale.

`metrics_table()` renders the markdown kept in docs/metrics.md (a test compares them);
`series_names()` lists every sample name the registry can export, against which the tests check
the queries in `monitoring.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from monitoring.metrics import Metrics

# Sample names each metric type exports beside its family name (prometheus_client 0.20+).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


@dataclass(frozen=True)
class MetricDoc:
    """One metric as a user sees it in /metrics."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def metric_docs(metrics: Metrics | None = None) -> list[MetricDoc]:
    """Every metric of `Metrics`, in declaration order."""
    metrics = metrics or Metrics()
    docs = []
    for wrapper in vars(metrics).values():
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        family = next(iter(wrapper.describe()))
        name = family.name + "_total" if family.type == "counter" else family.name
        docs.append(MetricDoc(name, family.type, tuple(wrapper._labelnames), family.documentation))
    return docs


def series_names(metrics: Metrics | None = None) -> set[str]:
    """Every sample name the metrics can export, suffixes (`_bucket`, `_created`...) included."""
    names: set[str] = set()
    for doc in metric_docs(metrics):
        family = doc.name.removesuffix("_total") if doc.type == "counter" else doc.name
        names.update(family + suffix for suffix in _SUFFIXES[doc.type])
    return names


def metrics_table(metrics: Metrics | None = None) -> str:
    """The markdown table of every metric: name, type, labels and meaning."""
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for doc in metric_docs(metrics):
        labels = ", ".join(f"`{label}`" for label in doc.labels) or "-"
        meaning = doc.help.replace("|", "\\|")
        lines.append(f"| `{doc.name}` | {doc.type} | {labels} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # `python -m monitoring.docs > docs/metrics.md` regenerates the reference.
    print(metrics_table(), end="")
