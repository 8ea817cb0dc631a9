"""End to end in a real browser: Azurite, the ACA emulator, the functions, a hub, chromium.

The main flow proves a user reaches a working JupyterLab in a container app;
the regression flows prove each shipped routing setting is needed.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from waiting import wait_until

from local.procs import free_port
from local.stack import Stack, StackOptions

USER = "Émilie.O'Brien+test"
PASSWORD = "e2e-password"


def make_stack(tmp_path_factory, **options) -> Stack:
    return Stack(
        StackOptions(
            port=free_port(),
            password=PASSWORD,
            state_dir=tmp_path_factory.mktemp("stack"),
            test_admin_token=secrets.token_hex(16),
            **options,
        )
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # two environments; the first has no room for a server (0.25 of the 0.5 cores it takes),
    # so the user's server is placed in, and routed to, the second
    with make_stack(tmp_path_factory, environment_cores=(0.25, 10)) as running:
        yield running


def user_path(user: str) -> str:
    return f"/user/{urllib.parse.quote(user, safe='')}/"


def log_in(page, stack: Stack, user: str) -> None:
    page.goto(f"{stack.public_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/(hub|user)/.*"))


# Records every spawn-progress event in sessionStorage, which survives the page's own reload.
RECORD_PROGRESS = """
(() => {
  const Original = window.EventSource;
  window.EventSource = function (url, options) {
    const source = new Original(url, options);
    source.addEventListener("message", (e) => {
      const log = JSON.parse(sessionStorage.getItem("spawn-progress") || "[]");
      log.push(JSON.parse(e.data).message || "");
      sessionStorage.setItem("spawn-progress", JSON.stringify(log));
    });
    return source;
  };
})();
"""


def start_server_from_spawn_page(page, stack: Stack) -> None:
    """Start the default server from the spawn page."""
    page.add_init_script(RECORD_PROGRESS)
    page.goto(f"{stack.public_url}/hub/spawn")


def progress_messages(page) -> list[str]:
    return page.evaluate("JSON.parse(sessionStorage.getItem('spawn-progress') || '[]')")


def emulator_apps(stack: Stack) -> list[str]:
    return sorted(stack.emulator_apps())


def hub_api(stack: Stack, path: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{stack.public_url}/hub/api{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {stack.options.test_admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def wait_until_ready(stack: Stack, user: str, timeout: float = 180) -> dict:
    """The hub's view of ``user`` once its default server is ready."""
    seen: list[dict] = [{}]

    def ready() -> dict | None:
        seen[0] = model = hub_api(stack, f"/users/{urllib.parse.quote(user, safe='')}")
        return model if (model.get("servers", {}).get("") or {}).get("ready") else None

    return wait_until(ready, timeout=timeout, interval=0.5, what=f"the server of {user} to be ready",
                      describe=lambda: f"the hub says {seen[0]}")


def test_user_reaches_jupyterlab_runs_a_cell_and_stops(stack, browser_page):
    page = browser_page
    log_in(page, stack, USER)
    start_server_from_spawn_page(page, stack)
    # JupyterLab, through CHP and the emulator's ingress
    page.wait_for_url(re.compile(re.escape(user_path(USER.lower())) + "lab.*"), timeout=180_000)
    # the spawn page showed the hub's request, then the functions' progress relayed through the table
    messages = progress_messages(page)
    assert any("waiting for azure container apps" in m.lower() for m in messages), messages
    assert any("creating container app" in m.lower() for m in messages), messages
    page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    (app,) = stack.emulator_apps().values()
    assert app["environment_id"].endswith("/managedEnvironments/cae-env-2"), app["environment_id"]

    # a notebook; its cell runs through the kernel websocket
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    cell = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    cell.click()
    page.keyboard.type("print(6 * 7, 'from', __import__('os').environ['JUPYTERHUB_USER'])")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    # a freshly opened notebook may report idle before its kernel connection is wired up;
    # an execute sent in that moment is dropped by JupyterLab, so run the cell again if nothing came back
    for _attempt in range(3):
        cell.click()
        page.keyboard.press("Control+Enter")
        try:
            output.wait_for(timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    assert output.inner_text().strip() == f"42 from {USER.lower()}"  # JupyterHub lower-cases names

    # stop from the hub's control panel: the container app is gone afterwards
    page.goto(f"{stack.public_url}/hub/home")
    page.click("#stop")
    page.wait_for_selector("#start", state="visible", timeout=120_000)
    wait_until(lambda: emulator_apps(stack) == [], timeout=60, interval=0.5, what="the container app to be gone",
               describe=lambda: f"apps: {emulator_apps(stack)}")


def test_without_change_origin_the_proxy_loops_into_431(tmp_path_factory, browser_page):
    with make_stack(tmp_path_factory, change_origin=False) as broken:
        page = browser_page
        log_in(page, broken, "loop")
        start_server_from_spawn_page(page, broken)
        # the server runs, but the browser cannot reach it: Host routing sends it back to the hub
        wait_until_ready(broken, "loop")
        # (the bare 431 has no page to render, so chromium would treat it as a download:
        # ask through the browser context's own HTTP client, with the same cookies)
        before = broken.emulator_stats()["ingress_requests"]
        response = page.context.request.get(f"{broken.public_url}{user_path('loop')}lab")
        assert response.status == 431
        # and it is the loop: the request came back through the ingress to the hub, hop after hop
        # (each hop appends to X-Forwarded-For until a header limit answers 431; one pass is one hop)
        hops = broken.emulator_stats()["ingress_requests"] - before
        assert hops > 10, hops


def test_without_the_origin_fix_the_kernel_websocket_is_refused(tmp_path_factory, browser_page):
    with make_stack(tmp_path_factory, allow_origin_fix=False) as broken:
        page = browser_page
        log_in(page, broken, "origin")
        start_server_from_spawn_page(page, broken)
        wait_until_ready(broken, "origin")
        page.wait_for_url(re.compile(".*/user/origin/lab.*"), timeout=120_000)
        # a kernel, created behind the browser's back (no Origin header), so only the websocket is tested
        token = hub_api(broken, "/users/origin/tokens", "POST", {"note": "e2e"})["token"]
        server_url = hub_api(broken, "/users/origin")["servers"][""]["url"]
        (app,) = broken.emulator_apps().values()
        fqdn = app["fqdn"]
        request = urllib.request.Request(
            f"http://{fqdn}{server_url}api/kernels", method="POST", data=b"{}",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            kernel_id = json.loads(r.read())["id"]
        result = page.evaluate(
            """([path]) => new Promise(resolve => {
                const ws = new WebSocket(`ws://${location.host}${path}`);
                ws.onopen = () => { ws.close(); resolve("open"); };
                ws.onerror = () => resolve("refused");
                setTimeout(() => resolve("timeout"), 30000);
            })""",
            [f"{server_url}api/kernels/{kernel_id}/channels"],
        )
        assert result == "refused"
