"""The rollout console: `/ui` in the browser, behind the admin token (see `session`).

`pages` serves the page, its login form and static files; `api` is what the page reads and
does, through the admin API's own handlers; `queries` and `figures` read the log and the
metrics for it.
"""

from __future__ import annotations

from fastapi import FastAPI

from proxy.console import api, pages


def include(app: FastAPI) -> None:
    """Serve the console from `app`."""
    app.include_router(pages.router)
    app.include_router(api.router)
