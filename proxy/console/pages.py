"""/ui: the console's page, its login form and its static files (shipped in the package:
no build step, no CDN).

The page is one HTML shell and a framework-free script that draws Routes, Route, Student,
Log and Jobs from `/ui/api`. Every response forbids framing (a control must not be clicked
through another site's page) and caching, and allows scripts and styles from here only.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from proxy.console.session import (
    clear_cookie,
    current_session,
    same_origin,
    sessions,
    set_cookie,
)

router = APIRouter(prefix="/ui", include_in_schema=False)
STATIC = resources.files("proxy.console") / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
MAX_FORM_BYTES = 8192


@router.get("")
@router.get("/")
async def index(request: Request) -> Response:
    """The console, or the login form for a browser without a session."""
    if current_session(request) is None:
        return _redirect("/ui/login")
    return HTMLResponse(_static("index.html"), headers=HEADERS)


@router.get("/login")
async def login_form(request: Request) -> Response:
    sessions(request)  # a 403 that says why when no admin token is configured
    return HTMLResponse(_login_page(None), headers=HEADERS)


@router.post("/login")
async def login(request: Request) -> Response:
    """Exchange the admin token for a session cookie; a wrong token gets the form again, 401."""
    found = sessions(request)
    body = await request.body()
    token = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")).get("token", [""])[0]
    if not same_origin(request):  # another site must not log a browser in (login CSRF)
        return HTMLResponse(_login_page("Cross-origin login refused."), 403, headers=HEADERS)
    if not token or not found.token_matches(token):
        return HTMLResponse(
            _login_page("Wrong admin token: use the server's server.admin_token."),
            401,
            headers=HEADERS,
        )
    response = _redirect("/ui/")
    set_cookie(response, request, found.new_cookie())
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not same_origin(request):  # another site must not log a browser out
        return Response("Cross-origin logout refused.", 403, media_type="text/plain")
    response = _redirect("/ui/login")
    clear_cookie(response, request)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """A file of the console's static folder (no subfolders, no dotfiles)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in TYPES:
        return Response("Not found.", 404, media_type="text/plain")
    try:
        content = _static(name)
    except FileNotFoundError:
        return Response("Not found.", 404, media_type="text/plain")
    return Response(content, media_type=TYPES[suffix], headers=HEADERS)


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _login_page(error: str | None) -> str:
    # The only server-filled text is one of our own fixed sentences: nothing a client sent.
    message = f'<p class="error" role="alert">{error}</p>' if error else ""
    return _static("login.html").replace("<!--error-->", message)


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=HEADERS)
