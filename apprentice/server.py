"""`apprentice serve`: the stages composed into one server, under uvicorn, with a graceful stop.

The proxy answers requests; beside it run the logbook (capture and sealing), the canary loop
(and drift acting on it) and the retrain scheduler. This module builds them from the config,
hands the proxy what it needs of them, and runs their loops for as long as the app lives.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for in-flight requests
(up to server.graceful_shutdown_s); then the proxy finishes its shadow comparisons, the loops
stop, the canary persists its last transitions, and the logbook drains its queue and seals,
so nothing acknowledged to a client is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn

from apprentice.config import Config
from apprentice.jobs import job_command
from canary.loop import CanaryLoop
from logbook.writer import Logbook
from monitoring.drift_monitor import DriftMonitor
from monitoring.metrics import Metrics
from proxy.admin_jobs import JobRefused
from proxy.app import FastPath
from proxy.app import create_app as create_proxy
from proxy.connections import guarded_protocol
from proxy.routing import Traffic
from proxy.state import Backends
from retrain.scheduler import Scheduler
from store.store import open_store

log = logging.getLogger("apprentice.server")
CANARY_TICK_S = 1.0  # how often the canary loop looks for due intervals and new students
SCHEDULE_TICK_S = 2.0  # how often the scheduler looks at each route's new rows


def create_app(config: Config, metrics: Metrics | None = None) -> FastPath:
    """The whole server for `config` as an ASGI app (its parts start with the app)."""
    metrics = metrics or Metrics()
    return create_proxy(config.proxy_settings(), metrics, lambda: backends(config, metrics))


@contextlib.asynccontextmanager
async def backends(config: Config, metrics: Metrics) -> AsyncIterator[Backends]:
    """Open the logbook, the canary loop and the scheduler; run their loops; close in order."""
    store = open_store(config.store, config.data_dir)
    log.info("shared store: %s", store.describe())
    logbook = Logbook(config.data_dir, config.logbook, metrics, store)
    await logbook.open()
    routes = config.routes
    drift = DriftMonitor(metrics, {r.name: r.drift for r in routes})
    traffic = Traffic(r.name for r in routes)
    scheduler = Scheduler(
        config.data_dir,
        {r.name: r.retrain for r in routes},
        metrics,
        job_command(config),
    )
    canary = CanaryLoop(
        config.data_dir,
        {r.name: r.canary for r in routes},
        logbook=logbook,
        drift=drift,
        traffic=traffic,
        metrics=metrics,
        on_retrain=scheduler.trigger,
    )
    stop = asyncio.Event()
    loops: list[asyncio.Task[None]] = []
    try:
        await canary.open()
        loops.append(asyncio.create_task(tick_until(stop, CANARY_TICK_S, canary.tick)))
        scheduling = any(r.retrain.schedule for r in routes)
        if scheduling:
            loops.append(asyncio.create_task(tick_until(stop, SCHEDULE_TICK_S, scheduler.tick)))
        jobs = ServerJobs(config, logbook, scheduler, scheduling)
        yield Backends(logbook=logbook, traffic=traffic, canary=canary, drift=drift, jobs=jobs)
    finally:
        stop.set()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        scheduler.close()
        with contextlib.suppress(RuntimeError):  # the logbook failed to open: nothing to keep
            await canary.persist()  # the last transitions
        await logbook.close()


async def tick_until(
    stop: asyncio.Event, seconds: float, tick: Callable[[], Awaitable[None]]
) -> None:
    """Await `tick()` every `seconds` until `stop` is set. A failing tick is logged and the
    loop goes on: one bad tick must not end canary control or the retrain schedule."""
    while not stop.is_set():
        try:
            await tick()
        except Exception:
            log.exception("background tick failed; trying again in %g s", seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


class ServerJobs:
    """What `/admin/jobs` runs: curation now, in a thread; curate+retrain by the scheduler."""

    def __init__(self, config: Config, logbook: Logbook, scheduler: Scheduler, scheduling: bool):
        self.config, self.logbook, self.scheduler = config, logbook, scheduler
        self.scheduling = scheduling

    async def curate(self, route: str) -> dict[str, Any]:
        from curation.job import NoRowsError, run_curation
        from curation.report import result_to_json

        await self.logbook.flush()
        await self.logbook.seal()
        settings = self.config.route(route).curation
        try:
            result = await asyncio.to_thread(run_curation, self.config.data_dir, route, settings)
        except NoRowsError as exc:
            raise JobRefused(str(exc), "no_rows") from None
        return result_to_json(result)

    async def retrain(self, route: str) -> dict[str, Any]:
        if not self.scheduling:
            raise JobRefused(
                "The scheduler is not running in this server (no route has [routes.retrain] "
                "schedule = true); run `apprentice retrain` instead.",
                "no_scheduler",
            )
        await self.logbook.flush()
        await self.logbook.seal()
        return {"route": route, "queued": self.scheduler.trigger(route)}

    def status(self) -> dict[str, Any]:
        return {"routes": self.scheduler.status()}


def serve(config: Config, log_level: str = "info") -> None:
    """Run the server until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.server.host,
            port=config.server.port,
            loop="uvloop",
            http=guarded_protocol(config.server.header_timeout_s),
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=int(config.server.graceful_shutdown_s),
            backlog=4096,
            timeout_keep_alive=30,
        )
    )
    server.run()
