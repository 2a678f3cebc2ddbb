"""`apprentice serve`: the proxy under uvicorn, with a graceful stop.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for in-flight requests
(up to server.graceful_shutdown_s); then the lifespan drains the capture queue and seals, so
nothing acknowledged to a client is lost.
"""

from __future__ import annotations

import logging

import uvicorn

from apprentice.config import Config
from proxy.app import create_app


def serve(config: Config, log_level: str = "info") -> None:
    """Run the proxy until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=int(config.server.graceful_shutdown_s),
            backlog=4096,
            timeout_keep_alive=30,
        )
    )
    server.run()
