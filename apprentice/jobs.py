"""Jobs: the retrain job as its own process, and the jobs a running server offers its admin API.

The server's scheduler and `POST /admin/jobs/retrain` start `python -m apprentice.jobs` so
that training never runs in the server's event loop (nor holds its GIL). The config reaches
the child as JSON with secrets masked: curation and training need no keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apprentice.config import Config, RouteConfig, config_from_dict, offline_defaults
from store.store import Store, open_store

if TYPE_CHECKING:
    from retrain.augment import Relabel

READ = ("segments", "feedback")  # what curation reads, every replica's
TREES = ("datasets", "students")  # finished folders: curation, retrain and serving read them
STORE_SECRETS = ("access_key_id", "secret_access_key")


def pulled_store(config: Config) -> Store:
    """The shared store, with what curation and retrain read made readable under its root
    (nothing to move for a directory; an object store fills its mirror). StoreUnavailable
    when it cannot be reached."""
    store = open_store(config.store, config.data_dir)
    for prefix in READ:
        store.pull(prefix)
    for prefix in TREES:
        store.pull_trees(prefix)
    return store


def job_config_json(config: Config) -> str:
    """The config as JSON for a job process; SecretStr values come out masked."""
    return config.model_copy(update={"data_dir": config.data_dir.resolve()}).model_dump_json()


def job_command(config: Config) -> Callable[[str], list[str]]:
    """argv of the child job for a route (the config file is written on first use); the job
    reads the secrets it needs from its stdin (`job_secrets`)."""
    path = config.data_dir / "jobs" / "config.json"

    def command(route: str) -> list[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(job_config_json(config))
        return [sys.executable, "-m", "apprentice.jobs", "--config-json", str(path),
                "--route", route, "--secrets-stdin"]  # fmt: skip

    return command


def job_secrets(config: Config) -> bytes:
    """What a job needs of the secrets its JSON config masks: the store's keys (an object
    store is where its segments, datasets and students are). Sent on the child's stdin, never
    written to a file or an environment."""
    store = {name: value.get_secret_value() for name in STORE_SECRETS
             if (value := getattr(config.store, name)) is not None}  # fmt: skip
    return json.dumps({"store": store}).encode()


def with_secrets(raw: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    """The job's raw config with the masked secrets `job_secrets` sent put back."""
    store = secrets.get("store") or {}
    unknown = set(store) - set(STORE_SECRETS)
    if unknown:
        raise ValueError(f"unexpected secrets for a job: {sorted(unknown)}")
    return raw | {"store": (raw.get("store") or {}) | store} if store else raw


def relabeler(route: RouteConfig) -> Relabel | None:
    """The teacher for `augment.relabel = "teacher"`, or None when the route copies labels or
    this process does not hold the teacher's key (a job child gets the config with its
    secrets masked, and then copies labels)."""
    from retrain.relabel import TeacherRelabel

    if route.retrain.augment.relabel != "teacher":
        return None
    key = route.teacher_api_key.get_secret_value() if route.teacher_api_key else None
    if key is not None and (key.startswith("<unset ") or set(key) == {"*"}):
        return None
    return TeacherRelabel(
        route.teacher, key, route.teacher_api_base, route.input_cost_per_mtok,
        route.output_cost_per_mtok,
    )  # fmt: skip


def run_job(config: Config, route_name: str, progress: bool = False) -> dict[str, Any]:
    """Curate the route's new rows, then train and register a student on the new dataset."""
    from curation.job import NoRowsError, run_curation
    from curation.report import result_to_json
    from retrain.job import run_retrain

    route = config.route(route_name)
    store = pulled_store(config)  # every replica's segments, not only this one's
    try:
        curated = run_curation(store.root, route.name, route.curation, progress=progress)
    except NoRowsError as exc:
        return {"curation": {"status": "no_rows", "message": str(exc)}, "retrain": None}
    if curated.status == "written" and curated.path is not None:
        store.push_tree(curated.path, exclusive=True)
    out: dict[str, Any] = {"curation": result_to_json(curated)}
    if curated.status not in ("written", "up_to_date") or curated.version is None:
        out["retrain"] = None
        return out
    trained = run_retrain(
        store.root, route.name, route.retrain, dataset_version=curated.version,
        progress=progress, relabel=relabeler(route),
    )  # fmt: skip
    store.push_tree(trained.path, exclusive=True)  # published: every replica may load it now
    out["retrain"] = {
        "version": trained.version,
        "status": trained.status,
        "passed": trained.passed,
        "reasons": trained.reasons,
        "metrics": trained.metrics,
        "train_seconds": trained.train_seconds,
        "augment": trained.augment,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    offline_defaults()
    parser = argparse.ArgumentParser(description="curate and retrain one route")
    parser.add_argument("--config-json", type=Path, required=True)
    parser.add_argument("--route", required=True)
    parser.add_argument("--secrets-stdin", action="store_true", help="read job_secrets' JSON")
    args = parser.parse_args(argv)
    raw = json.loads(args.config_json.read_text())
    if args.secrets_stdin:
        raw = with_secrets(raw, json.loads(sys.stdin.read() or "{}"))
    config = config_from_dict(raw, environ={})
    result = run_job(config, args.route)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
