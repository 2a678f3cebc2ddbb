"""The console in Debian's headless Chromium, driven by Playwright: log in, see a route's
traffic, move its canary with the page's controls (and see `apprentice canary status` agree),
watch the page follow a change made elsewhere without a reload, read a student, the log and
run a job. One server and one browser for the module.

With APPRENTICE_SCREENSHOTS=<folder> the routes, route and student pages are saved there as
PNGs (the README's: `APPRENTICE_SCREENSHOTS=docs pytest tests/proxy/test_console_browser.py`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from apprentice.cli import app as cli
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.console_student import write_student

REQUESTS = 6
MARKUP = "never came <i>again</i>"  # logged text is shown as text, never as markup
TIMEOUT_MS = 15_000


def chromium() -> str:
    """Debian's Chromium, or a skip naming the package; under CI=true a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        message = (
            "Chromium or Playwright is missing: 'sudo apt-get install chromium' and "
            "`pip install -e .[dev]` run the browser tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningProxy, Path]]:
    """A server with one route, a registered student and some traffic; its CLI config."""
    tmp = tmp_path_factory.mktemp("console")
    data_dir = tmp / "data"
    write_student(data_dir, "triage", 1)
    with FakeTeacher() as teacher, RunningProxy(proxy_config(data_dir, teacher)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY)
        for i in range(REQUESTS):
            client.chat.completions.create(
                model="triage", messages=[{"role": "user", "content": f"Order {i} {MARKUP}"}]
            )
        config = tmp / "apprentice.toml"
        config.write_text(
            f'data_dir = "{data_dir}"\n'
            f'[server]\nport = {proxy.port}\nadmin_token = "{ADMIN_TOKEN}"\n'
            '[[routes]]\nname = "triage"\nteacher = "openai/x"\n'
        )
        yield proxy, config


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


def canary_status(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["canary", "status", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    route: dict[str, Any] = json.loads(result.stdout)["routes"]["triage"]
    return route


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("APPRENTICE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_wrong_token_is_refused(served: tuple[RunningProxy, Path], browser: Any) -> None:
    proxy, _ = served
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{proxy.url}/ui/")
    assert page.url.endswith("/ui/login")
    page.fill("#token", "not-the-admin-token")
    page.click("button[type=submit]")
    assert "Wrong admin token" in page.inner_text(".error")
    assert context.cookies() == []
    page.goto(f"{proxy.url}/ui/#/jobs")  # still no way in
    assert page.url.split("#")[0].endswith("/ui/login")
    context.close()


def test_log_in_watch_a_route_move_its_canary_and_read_the_loop(
    served: tuple[RunningProxy, Path], browser: Any
) -> None:
    proxy, config = served
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # every control asks to confirm
    page.goto(f"{proxy.url}/ui/login")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in page.evaluate("JSON.stringify(localStorage) + document.cookie")

    requests = page.locator("article[data-route=triage] [data-figure=requests] dd")
    requests.filter(has_text=str(REQUESTS)).wait_for()
    assert "100.0%" in page.inner_text("article[data-route=triage] table.traffic")
    screenshot(page, "console-routes.png")

    page.click("text=canary and controls")
    page.locator("#state", has_text="idle").wait_for()
    page.select_option("#version", "v1")
    page.click("button[data-action=start]")
    page.locator("#result", has_text="start: now shadow").wait_for()
    page.fill("#weight", "30")
    page.click("button[data-action=set-weight]")
    page.locator("#result", has_text="set-weight: now canary, traffic v1: 30%").wait_for()
    status = canary_status(config)
    assert (status["state"], status["weights"]) == ("canary", {"v1": 30})

    # A change made elsewhere (the admin API, as another replica's console would) shows up
    # without a reload: the page refreshes its figures every few seconds.
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    httpx.post(f"{proxy.url}/admin/canary/triage/pause", headers=admin).raise_for_status()
    page.locator("#state", has_text="paused").wait_for()
    httpx.post(f"{proxy.url}/admin/canary/triage/resume", headers=admin).raise_for_status()
    page.locator("#state", has_text="canary").wait_for()
    screenshot(page, "console-route.png")

    page.fill("#reason", "answers look wrong")
    page.click("button[data-action=rollback]")
    page.locator("#result", has_text="rollback: now rolled_back").wait_for()
    status = canary_status(config)
    assert (status["state"], status["weights"]) == ("rolled_back", {})
    assert status["history"][-1]["detail"] == "answers look wrong"
    page.click("button[data-action=promote]")  # nothing to promote now: the reason is shown
    page.locator("#result", has_text="promote refused:").wait_for()
    assert canary_status(config)["state"] == "rolled_back"

    page.goto(f"{proxy.url}/ui/#/student/triage/v1")
    page.locator("#gate", has_text="passed").wait_for()
    assert "Refund for order 8812" in page.inner_text("#worst")
    assert page.locator("svg.chart polyline").count() == 4  # two cascade signals, two losses
    assert "novel" in page.inner_text("#slices") and "dedupe" in page.inner_text("#curation")
    screenshot(page, "console-student.png")

    page.goto(f"{proxy.url}/ui/#/log/triage")
    page.locator("#requests tbody tr").nth(REQUESTS - 1).wait_for()
    page.locator("#requests tbody a").first.click()
    page.locator("#request", has_text=f"Order {REQUESTS - 1} {MARKUP}").wait_for()
    assert page.locator("#request i").count() == 0

    page.goto(f"{proxy.url}/ui/#/jobs")
    page.click("button[data-job=curate]")
    page.locator("#job-result", has_text="curate triage:").wait_for()
    context.close()
