"""The one command line: `apprentice serve | stats | export | ...`.

Configuration enters here and is passed down. Read commands take `--json`. Every command
works whether or not `serve` is running: they read sealed segments.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from apprentice.config import Config, ConfigError, load_config

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


def _config(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def serve(
    config: ConfigOption = Path("apprentice.toml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the proxy (and its capture, sealing and schedules) until SIGTERM/SIGINT."""
    from apprentice.logbook import LogbookLocked
    from apprentice.server import serve as run_server

    cfg = _config(config)
    if not cfg.routes:
        err.print("[red]error:[/red] the config has no [[routes]]; add one to proxy a teacher.")
        raise typer.Exit(2)
    try:
        run_server(cfg, log_level=log_level)
    except LogbookLocked as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def stats(config: ConfigOption = Path("apprentice.toml"), as_json: JsonOption = False) -> None:
    """Rows, routes, tokens, cost, who served them, per day (from sealed segments)."""
    from apprentice.stats import log_stats, render_stats

    result = log_stats(_config(config).data_dir)
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
        int | None, typer.Option("--dataset", help="A curated dataset version (default: raw log).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Logged pairs (or a curated dataset) in OpenAI's fine-tuning JSONL format."""
    from apprentice.export import logged_pairs, write_jsonl

    cfg = _config(config)
    try:
        cfg.route(route)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if dataset is not None:
        from apprentice.export import dataset_pairs

        examples = dataset_pairs(cfg.data_dir, route, dataset)
    else:
        examples = logged_pairs(cfg.data_dir, route)
    count = write_jsonl(examples, output)
    err.print(f"exported {count} examples" + (f" to {output}" if output else ""))


if __name__ == "__main__":
    app()
