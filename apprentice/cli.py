"""The one command line: `apprentice serve | stats | export | ...`.

Configuration enters here and is passed down. Read commands take `--json`. Every command
works whether or not `serve` is running: they read sealed segments.
"""

from __future__ import annotations

import faulthandler
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from apprentice.config import Config, ConfigError, RouteConfig, load_config, offline_defaults

if TYPE_CHECKING:
    from store.store import Store

app = typer.Typer(
    name="apprentice",
    help="An OpenAI-compatible proxy that logs its teacher and distils students from it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to apprentice.toml.", show_default=True)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def error(message: object) -> None:
    """One sentence on stderr, printed as written (a `[[routes]]` in it is not markup)."""
    err.print(f"[red]error:[/red] {escape(str(message))}")


@app.callback()
def _main() -> None:
    offline_defaults()  # before any command imports litellm or transformers


def _config(path: Path, secrets_required: bool = False) -> Config:
    """The config; keys are only required by the commands that use them (serve, canary)."""
    try:
        cfg = load_config(path, secrets_required=secrets_required)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
    if cfg.data_dir.exists() and not cfg.data_dir.is_dir():  # read commands would find nothing
        error(f"data_dir {cfg.data_dir} is a file, not a directory; point data_dir at one.")
        raise typer.Exit(2)
    return cfg


def _store(cfg: Config) -> Store:
    """The shared store the config names (contacted on first use, not here)."""
    from store.store import open_store

    return open_store(cfg.store, cfg.data_dir)


def _pulled(cfg: Config) -> Store:
    """The shared store with segments, datasets and students readable under its root; exits
    with one sentence when it cannot be reached."""
    from apprentice.jobs import pulled_store
    from store.store import StoreError

    try:
        return pulled_store(cfg)
    except StoreError as exc:
        error(exc)
        raise typer.Exit(1) from None


def _warn_skipped(skipped: list[dict[str, str]]) -> None:
    """One line on stderr when unreadable segment files were left out."""
    if skipped:
        from logbook.segments import Skipped, describe_skipped

        files = [Skipped(Path(s["path"]), s["reason"]) for s in skipped]
        err.print(f"[yellow]warning:[/yellow] {escape(describe_skipped(files))}")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def serve(
    config: ConfigOption = Path("apprentice.toml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes on this host, behind one port: each its own logbook shard, "
            "sharing the store and the control plane.",
        ),
    ] = 1,
    worker: Annotated[str | None, typer.Option(hidden=True, help="<index>/<count>")] = None,
) -> None:
    """Run the proxy (and its capture, sealing and schedules) until SIGTERM/SIGINT."""
    from apprentice.server import serve as run_server
    from apprentice.workers import Slot, Supervisor, metrics_dir, worker_command, worker_config

    cfg = _config(config, secrets_required=True)
    if not cfg.routes:
        error("the config has no [[routes]] table; add one to proxy a teacher.")
        raise typer.Exit(2)
    if workers > 1 and worker is None:
        import logging

        logging.basicConfig(level=log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
        _preflight(cfg, worker_config(cfg, Slot(0, workers)))
        supervisor = Supervisor(worker_command(config, log_level), cfg.data_dir, workers)
        raise typer.Exit(supervisor.run())
    slot = None
    if worker is not None:
        try:
            slot = Slot.parse(worker)
        except ValueError as exc:
            error(f"--worker: {exc}")
            raise typer.Exit(2) from None
        home = cfg.data_dir
        cfg = worker_config(cfg, slot)
    _preflight(cfg, cfg)
    if slot is None:
        run_server(cfg, log_level=log_level)
    else:
        run_server(cfg, log_level=log_level, slot=str(slot),
                   metrics_dir=str(metrics_dir(home)))  # fmt: skip


def _preflight(cfg: Config, served: Config) -> None:
    """Exit 2 with one sentence when the server could not start (data_dir, logbook, control
    plane); `served`: the config whose control plane the server uses."""
    from apprentice.preflight import StartupError, preflight
    from apprentice.server import control_url

    try:
        preflight(cfg, control_url(served))
    except (StartupError, ValueError) as exc:
        error(exc)
        raise typer.Exit(2) from None


@app.command()
def stats(config: ConfigOption = Path("apprentice.toml"), as_json: JsonOption = False) -> None:
    """Rows, routes, tokens, cost, who served them, per day (from sealed segments)."""
    from apprentice.stats import log_stats, render_stats
    from store.store import StoreError

    try:
        result = log_stats(_store(_config(config)))
    except StoreError as exc:
        error(exc)
        raise typer.Exit(1) from None
    _warn_skipped(result["skipped_segments"])
    if as_json:
        _print_json(result)
    else:
        console.print(render_stats(result))


class ExportFormat(StrEnum):
    openai_jsonl = "openai-jsonl"


@app.command()
def export(
    route: Annotated[str, typer.Option("--route", help="Route to export.")],
    config: ConfigOption = Path("apprentice.toml"),
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.openai_jsonl,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="A curated dataset version, v1 or 1 (default: raw log)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Logged pairs (or a curated dataset) in OpenAI's fine-tuning JSONL format."""
    from apprentice.export import logged_pairs, write_jsonl
    from logbook.segments import Skipped

    cfg = _config(config)
    try:
        cfg.route(route)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None
    version = None if dataset is None else _version(dataset, "--dataset")
    from store.store import StoreError

    skipped: list[Skipped] = []
    store = _store(cfg)
    try:
        if version is not None:
            from apprentice.export import dataset_pairs

            store.pull_trees(f"datasets/{route}")
            examples = dataset_pairs(store.root, route, version)
        else:
            examples = logged_pairs(store, route, skipped)
        count = write_jsonl(examples, output)
    except (FileNotFoundError, StoreError) as exc:
        error(exc)
        raise typer.Exit(1) from None
    _warn_skipped([s.as_dict() for s in skipped])
    err.print(f"exported {count} examples" + (f" to {output}" if output else ""))


@app.command()
def curate(
    route: Annotated[str, typer.Option("--route", help="Route to curate.")],
    config: ConfigOption = Path("apprentice.toml"),
    since: Annotated[
        datetime | None, typer.Option(help="Only rows started at or after this time (UTC).")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only rows of this x-apprentice-task.")] = None,
    memory_limit: Annotated[
        str, typer.Option(help="DuckDB's memory limit; past it the job spills to disk.")
    ] = "768MB",
    workers: Annotated[
        int, typer.Option(min=1, help="Processes parsing and scrubbing rows (duckdb engine).")
    ] = 1,
    engine: Annotated[
        str, typer.Option(help="duckdb, or ray: parse and scrub on the Ray cluster at RAY_ADDRESS.")
    ] = "duckdb",
    as_json: JsonOption = False,
) -> None:
    """Curate the route's sealed log into the next dataset version (works beside `serve`)."""
    from curation.job import NoRowsError, run_curation
    from curation.report import render_report, result_to_json
    from curation.scan import Resources
    from store.store import StoreError

    if engine not in ("duckdb", "ray"):
        err.print(f"[red]error:[/red] unknown engine {engine!r}; use duckdb or ray.")
        raise typer.Exit(2)
    resources = Resources(
        memory_limit=memory_limit, engine="ray" if engine == "ray" else "duckdb", workers=workers
    )

    cfg = _config(config)
    route_cfg = _route(cfg, route)
    store = _pulled(cfg)
    try:
        result = run_curation(
            store.root, route, route_cfg.curation, task=task, since=since,
            progress=not as_json, resources=resources,
        )  # fmt: skip
        if result.status == "written" and result.path is not None:
            store.push_tree(result.path, exclusive=True)
    except (NoRowsError, StoreError) as exc:
        error(exc)
        raise typer.Exit(1) from None
    except ValueError as exc:  # a bad --memory-limit
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    _warn_skipped(result.skipped_segments)
    if as_json:
        _print_json(result_to_json(result))
    else:
        console.print(render_report(result))
    if result.status == "empty":
        raise typer.Exit(1)


@app.command()
def compact(
    route: Annotated[str, typer.Option("--route", help="Route whose segments to compact.")],
    config: ConfigOption = Path("apprentice.toml"),
    grace_s: Annotated[
        float, typer.Option(help="Seconds a replaced file stays for readers that listed it.")
    ] = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Merge the route's small sealed segments per day into one (works beside `serve`)."""
    from logbook.compaction import compact_route

    cfg = _config(config)
    _route(cfg, route)
    store = _pulled(cfg)
    if store.remote:
        err.print(
            "[red]error:[/red] compaction rewrites files in place under the store's root; run "
            "it where the segments live (a shared directory), not on an object store's mirror."
        )
        raise typer.Exit(1)
    report = compact_route(store.root, route, grace_s=grace_s)
    if as_json:
        _print_json(report.to_json())
    else:
        console.print(
            f"route {route}: merged {report.replaced} files into {report.merged} "
            f"({report.rows} rows); deleted {report.deleted} replaced files past the grace period"
        )


@app.command()
def retrain(
    route: Annotated[str, typer.Option("--route", help="Route to train a student for.")],
    config: ConfigOption = Path("apprentice.toml"),
    dataset: Annotated[
        str | None, typer.Option(help="Dataset version, v3 or 3 (default: newest).")
    ] = None,
    base: Annotated[str | None, typer.Option(help="tiny, or a local HF model folder.")] = None,
    method: Annotated[str | None, typer.Option(help="lora or full.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train, evaluate and gate a student on a dataset version, and register it."""
    from apprentice.jobs import relabeler
    from retrain.job import run_retrain
    from retrain.schedule import RetrainBusy
    from store.store import StoreError

    cfg = _config(config)
    route_cfg = _route(cfg, route)
    version = None if dataset is None else _version(dataset, "--dataset")
    if method not in (None, "lora", "full"):
        err.print("[red]error:[/red] --method must be lora or full.")
        raise typer.Exit(2)
    store = _pulled(cfg)
    try:
        result = run_retrain(
            store.root, route, route_cfg.retrain, dataset_version=version, base=base,
            method=method, progress=not as_json, relabel=relabeler(route_cfg),
        )  # fmt: skip
        store.push_tree(result.path, exclusive=True)
    except (RetrainBusy, FileNotFoundError, ValueError, StoreError) as exc:
        error(exc)
        raise typer.Exit(1) from None
    summary = {
        "route": result.route, "version": f"v{result.version}", "status": result.status,
        "passed": result.passed, "reasons": result.reasons, "path": str(result.path),
        "dataset_version": result.dataset_version, "metrics": result.metrics,
        "base_metrics": result.base_metrics, "train_seconds": result.train_seconds,
        "slices": {k: {m: v for m, v in s.items() if m not in ("worst", "held_out")}
                   for k, s in result.slices.items()},
        "cascade": {k: result.cascade.get(k) for k in ("signal", "threshold", "coverage",
                                                       "agreement", "slices")},
        "augment": result.augment,
    }  # fmt: skip
    if as_json:
        _print_json(summary)
    else:
        verdict = "registered as a candidate" if result.passed else "rejected"
        console.print(f"student v{result.version} of {route}: {verdict} ({result.path})")
        for reason in result.reasons:
            console.print(f"  - {reason}")
    if not result.passed:
        raise typer.Exit(1)


students_app = typer.Typer(help="Registered students.", no_args_is_help=True)
app.add_typer(students_app, name="students")


@students_app.command("list")
def students_list(
    config: ConfigOption = Path("apprentice.toml"),
    route: Annotated[str | None, typer.Option("--route")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered student with its status and held-out exact match."""
    from rich.table import Table

    from retrain.students import list_students

    cfg = _config(config)
    root = _pulled(cfg).root
    students = list_students(root, route)
    if as_json:
        _print_json([s.as_dict() for s in students])
        return
    table = Table(title=f"students in {root}")
    for col in ("route", "version", "status", "exact match", "dataset", "method", "created"):
        table.add_column(col)
    for s in students:
        em = "-" if s.exact_match is None else f"{s.exact_match:.3f}"
        table.add_row(s.route, f"v{s.version}", s.status, em, f"v{s.dataset_version}",
                      s.method, s.created_at)  # fmt: skip
    console.print(table)


@students_app.command("show")
def students_show(
    route: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument(help="e.g. v3")],
    config: ConfigOption = Path("apprentice.toml"),
    as_json: JsonOption = False,
) -> None:
    """One student's manifest and evaluation report."""
    from retrain.students import show_student

    cfg = _config(config)
    try:
        shown = show_student(_pulled(cfg).root, route, int(version.removeprefix("v")))
    except (FileNotFoundError, ValueError) as exc:
        error(exc)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(shown)
        return
    verdict = shown["verdict"]
    console.print(f"[bold]{route} {version}[/bold]: {shown['status']}, gate "
                  f"{'passed' if verdict['passed'] else 'refused'}")  # fmt: skip
    for reason in verdict["reasons"]:
        console.print(f"  - {reason}")
    console.print_json(json.dumps(shown, default=str))


canary_app = typer.Typer(
    help="Canary control (talks to the running server's admin API).", no_args_is_help=True
)
app.add_typer(canary_app, name="canary")


def _admin(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx

    if cfg.server.admin_token is None:
        err.print("[red]error:[/red] server.admin_token is not set; the admin API is disabled.")
        raise typer.Exit(2)
    host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::") else cfg.server.host
    url = f"http://{host}:{cfg.server.port}/admin{path}"
    headers = {"authorization": f"Bearer {cfg.server.admin_token.get_secret_value()}"}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=60)
    except httpx.TransportError:
        error(f"no apprentice server answers at {url}; is `serve` running?")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        error(message)
        raise typer.Exit(1)
    return response.json()


def _print_canary(route: str, snap: dict[str, Any]) -> None:
    weights = ", ".join(f"{v}: {w}%" for v, w in (snap.get("weights") or {}).items()) or "teacher"
    step = "" if snap.get("step") is None else f" step {snap['step']}"
    console.print(
        f"[bold]{route}[/bold]: {snap['state']}{step}, candidate {snap.get('version') or '-'}, "
        f"current {snap.get('current') or '-'}, traffic {weights}"
    )
    for check in snap.get("last_checks") or []:
        console.print(
            f"  {check['name']}: {check['status']} (value {check['value']}, "
            f"threshold {check['threshold']})"
        )
    for t in (snap.get("history") or [])[-5:]:
        console.print(f"  {t['from_state']} -> {t['to_state']} ({t['reason']}): {t['detail']}")
    refused = snap.get("retrain")
    if refused:
        console.print(f"  newest student {refused['version']} refused by the gate:")
        for reason in refused["reasons"]:
            console.print(f"    - {reason}")
        console.print(f"  {refused['next']}")


@canary_app.command("status")
def canary_status(
    config: ConfigOption = Path("apprentice.toml"), as_json: JsonOption = False
) -> None:
    """Per route: state, step, weights, last checks with their values, history."""
    result = _admin(_config(config, secrets_required=True), "GET", "/canary")
    if as_json:
        _print_json(result)
        return
    for route, snap in result["routes"].items():
        _print_canary(route, snap)


def _canary_action(config: Path, route: str, action: str, body: dict[str, Any] | None) -> None:
    snap = _admin(
        _config(config, secrets_required=True), "POST", f"/canary/{route}/{action}", body or {}
    )
    _print_canary(route, snap)


@canary_app.command("start")
def canary_start(route: str, version: str, config: ConfigOption = Path("apprentice.toml")) -> None:
    """Put a registered student in shadow."""
    _canary_action(config, route, "start", {"version": version})


@canary_app.command("set-weight")
def canary_set_weight(
    route: str, version: str, pct: int, config: ConfigOption = Path("apprentice.toml")
) -> None:
    """Give a student PCT percent of the route's traffic (0-100)."""
    if not 0 <= pct <= 100:
        err.print(f"[red]error:[/red] the weight must be between 0 and 100, not {pct}.")
        raise typer.Exit(2)
    _canary_action(config, route, "set-weight", {"version": version, "weight": pct})


@canary_app.command("pause")
def canary_pause(route: str, config: ConfigOption = Path("apprentice.toml")) -> None:
    """Hold the canary where it is."""
    _canary_action(config, route, "pause", None)


@canary_app.command("resume")
def canary_resume(route: str, config: ConfigOption = Path("apprentice.toml")) -> None:
    """Let a paused canary move again."""
    _canary_action(config, route, "resume", None)


@canary_app.command("promote")
def canary_promote(route: str, config: ConfigOption = Path("apprentice.toml")) -> None:
    """Give the candidate 100% now."""
    _canary_action(config, route, "promote", None)


@canary_app.command("rollback")
def canary_rollback(
    route: str,
    config: ConfigOption = Path("apprentice.toml"),
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "rolled back by hand",
) -> None:
    """Send all of the route's traffic back to the teacher now."""
    _canary_action(config, route, "rollback", {"reason": reason})


def _version(text: str, option: str) -> int:
    """A version as `curate` and `students` print it (`v3`) or as a number (`3`); exit 2
    otherwise."""
    number = text.strip().lower().removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        error(f"{option} takes a version such as v3 or 3, not {text!r}.")
        raise typer.Exit(2)
    return int(number)


def _route(cfg: Config, name: str) -> RouteConfig:
    try:
        return cfg.route(name)
    except ConfigError as exc:
        error(exc)
        raise typer.Exit(2) from None


@app.command()
def demo(
    quick: Annotated[
        bool, typer.Option(help="Smaller student, fewer requests, same phases.")
    ] = False,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the data here (default: a temporary folder).")
    ] = None,
    plain: Annotated[bool, typer.Option(help="No live screen (logs and CI).")] = False,
) -> None:
    """The whole loop offline: teacher traffic, a student trained, canary, drift, a new student."""
    import asyncio

    from demo.plan import plan_for
    from demo.run import data_dir_for, remove, run_demo
    from demo.summary import render, save_records
    from demo.view import DemoView

    data_dir, kept = data_dir_for(keep)
    plan = plan_for(quick)
    # Every phase has a deadline; a demo far past all of them is stuck somewhere: say where
    # (every thread's stack on stderr), once, and go on.
    faulthandler.dump_traceback_later(plan.stuck_after_s, exit=False)
    console.print(f"apprentice demo ({'quick' if quick else 'full'}); data in {data_dir}")
    with DemoView(console, live=not plain) as view:
        outcome = asyncio.run(run_demo(plan, data_dir, view))
    summary = render(outcome, console)
    save_records(outcome, summary)
    if outcome.ok:
        console.print(f"[green]done[/green]: phases at {outcome.phases}")
    else:
        err.print(f"[red]the demo stopped in phase {outcome.failed_phase!r}[/red]; "
                  f"see {data_dir / 'serve.log'}")  # fmt: skip
    if not kept and outcome.ok:
        console.print("(temporary data removed; pass --keep DIR to keep it)")
        remove(data_dir)
    if not outcome.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
