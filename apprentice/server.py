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
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from apprentice.config import Config
from apprentice.jobs import READ, TREES, job_command, job_secrets
from canary.controller import Transition
from canary.loop import LEASE, CanaryLoop
from canary.store import history, load_snapshots
from cluster.control import ControlUnavailable, open_control
from cluster.objects import ObjectOwners
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
from store.store import Store, StoreUnavailable, open_store

log = logging.getLogger("apprentice.server")
CANARY_TICK_S = 1.0  # how often the canary loop looks for due intervals and new students
SCHEDULE_TICK_S = 2.0  # how often the scheduler looks at each route's new rows
STORE_PULL_S = 10.0  # how often an object store's new students and datasets are mirrored


def create_app(
    config: Config, metrics: Metrics | None = None, replica: str | None = None
) -> FastPath:
    """The whole server for `config` as an ASGI app (its parts start with the app).
    `replica`: this process's name among replicas (default: host, port and pid)."""
    metrics = metrics or Metrics()
    name = replica or f"{socket.gethostname()}:{config.server.port}:{os.getpid()}"
    return create_proxy(config.proxy_settings(), metrics, lambda: backends(config, metrics, name))


def control_url(config: Config) -> str:
    """The control plane's URL: the configured one, or an embedded SQLite file in data_dir."""
    if config.cluster.control_url is not None:
        return config.cluster.control_url.get_secret_value()
    return f"sqlite:///{(config.data_dir / 'control.sqlite3').resolve()}"


@contextlib.asynccontextmanager
async def backends(config: Config, metrics: Metrics, replica: str) -> AsyncIterator[Backends]:
    """Open the logbook, the control plane, the canary loop and the scheduler; run their
    loops; close in order."""
    store = open_store(config.store, config.data_dir)
    log.info("shared store: %s", store.describe())
    logbook = Logbook(config.data_dir, config.logbook, metrics, store)
    await logbook.open()
    control = await asyncio.to_thread(open_control, control_url(config), replica)
    log.info("control plane: %s (replica %s)", control.url, replica)
    routes = config.routes
    drift = DriftMonitor(metrics, {r.name: r.drift for r in routes})
    traffic = Traffic(r.name for r in routes)
    scheduler = Scheduler(
        store.root,
        {r.name: r.retrain for r in routes},
        metrics,
        job_command(config),
        stdin=lambda: job_secrets(config),
    )
    canary = CanaryLoop(
        store.root,
        {r.name: r.canary for r in routes},
        control=control,
        drift=drift,
        traffic=traffic,
        metrics=metrics,
        on_retrain=scheduler.trigger,
        lease_ttl_s=config.cluster.lease_ttl_s,
        info={"host": socket.gethostname(), "port": config.server.port, "pid": os.getpid()},
    )
    stop = asyncio.Event()
    loops: list[asyncio.Task[None]] = []
    owners: ObjectOwners | None = None
    try:
        await canary.open(await logbook.run(_legacy_canary))
        tick_s = min(CANARY_TICK_S, config.cluster.poll_interval_s)
        loops.append(asyncio.create_task(tick_until(stop, tick_s, canary.tick)))
        scheduling = any(r.retrain.schedule for r in routes)
        if scheduling:

            async def schedule() -> None:
                if canary.leading:  # one replica runs the schedule: the leader
                    if store.remote:  # it counts every replica's sealed rows
                        await asyncio.to_thread(_pull, store, READ, store.pull)
                    await scheduler.tick()

            loops.append(asyncio.create_task(tick_until(stop, SCHEDULE_TICK_S, schedule)))
        if store.remote:  # students and datasets other replicas published reach the mirror

            async def mirror() -> None:
                await asyncio.to_thread(_pull, store, TREES, store.pull_trees)

            loops.append(asyncio.create_task(tick_until(stop, STORE_PULL_S, mirror)))
        jobs = ServerJobs(config, logbook, scheduler, scheduling, canary, store.root)
        owners = ObjectOwners(control)
        yield Backends(logbook=logbook, traffic=traffic, canary=canary, drift=drift, jobs=jobs,
                       owners=owners)  # fmt: skip
    finally:
        stop.set()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        scheduler.close()
        with contextlib.suppress(RuntimeError, ControlUnavailable):
            await canary.persist()  # the last transitions
        await canary.step_down()
        if owners is not None:
            await owners.settle()
        await logbook.close()
        control.close()


def _pull(store: Store, prefixes: tuple[str, ...], pull: Callable[[str], object]) -> None:
    try:
        for prefix in prefixes:
            pull(prefix)
    except StoreUnavailable as exc:  # serving goes on with what the mirror has
        log.warning("store: %s; trying again later", exc)


def _legacy_canary(con: Any) -> dict[str, tuple[dict[str, Any], list[Transition]]]:
    """Canary state a logbook kept before the control plane (imported once, at start)."""
    snapshots = load_snapshots(con)
    return {route: (snapshot, history(con, route)) for route, snapshot in snapshots.items()}


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
    """What `/admin/jobs` runs: curation now, in a thread; curate+retrain by the scheduler,
    which runs on the leader only."""

    def __init__(
        self,
        config: Config,
        logbook: Logbook,
        scheduler: Scheduler,
        scheduling: bool,
        canary: CanaryLoop,
        shared: Path,
    ) -> None:
        self.config, self.logbook, self.scheduler = config, logbook, scheduler
        self.scheduling, self.canary, self.shared = scheduling, canary, shared

    async def curate(self, route: str) -> dict[str, Any]:
        from curation.job import NoRowsError, run_curation
        from curation.report import result_to_json

        await self.logbook.flush()
        await self.logbook.seal()
        settings = self.config.route(route).curation
        try:
            result = await asyncio.to_thread(run_curation, self.shared, route, settings)
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
        if not self.canary.leading:
            leader = await asyncio.to_thread(self.canary.control.lease, LEASE)
            raise JobRefused(
                "Retraining runs on the leader replica"
                + (f" ({leader.holder})" if leader else " (none holds the lease right now)")
                + "; this replica does not lead. Ask again (a load balancer may send you to "
                "it), or run `apprentice retrain` where the store is.",
                "not_leader",
            )
        await self.logbook.flush()
        await self.logbook.seal()
        return {"route": route, "queued": self.scheduler.trigger(route)}

    def status(self) -> dict[str, Any]:
        return {"routes": self.scheduler.status()}


def serve(
    config: Config,
    log_level: str = "info",
    slot: str | None = None,
    metrics_dir: str | None = None,
) -> None:
    """Run the server until SIGTERM/SIGINT. `slot` ("<index>/<count>"): one of `serve --workers`
    N processes, each binding the same port (SO_REUSEPORT, the kernel spreading connections),
    their metrics in `metrics_dir`."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    replica = f"{socket.gethostname()}:{config.server.port}"
    replica += f":w{slot.split('/')[0]}" if slot is not None else ""
    replica += f":{os.getpid()}"
    app = create_app(config, Metrics(multiprocess_dir=metrics_dir), replica)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
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
    shared = [reuse_port_socket(config.server.host, config.server.port)] if slot else None
    server.run(sockets=shared)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
