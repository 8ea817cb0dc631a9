"""What a user does in the browser, as steps: log in, start and stop from the hub's pages, work in JupyterLab.

Every step waits for what the user would see (a page, a listing, a cell's
output), never for a fixed time. The hub's REST API (an admin service token
of the test stack) only ever checks what the browser did.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from waiting import wait_until

from local.stack import Stack

PASSWORD = "e2e-password"

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


def user_path(user: str, server: str = "") -> str:
    """The server's prefix; JupyterHub lower-cases user names."""
    path = f"/user/{urllib.parse.quote(user.lower(), safe='')}/"
    return path + (f"{urllib.parse.quote(server, safe='')}/" if server else "")


def hub_api(stack: Stack, path: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{stack.public_url}/hub/api{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {stack.options.test_admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def hub_metrics(stack: Stack) -> str:
    """What Prometheus scrapes from the hub: ``/hub/metrics`` (JupyterHub's registry, the spawner's series in it)."""
    request = urllib.request.Request(f"{stack.public_url}/hub/metrics",
                                     headers={"Authorization": f"token {stack.options.test_admin_token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read().decode()


def hub_user(stack: Stack, user: str) -> dict:
    return hub_api(stack, f"/users/{urllib.parse.quote(user.lower(), safe='')}")


def server_model(stack: Stack, user: str, server: str = "") -> dict | None:
    """The hub's model of the server (None when it has none)."""
    return hub_user(stack, user).get("servers", {}).get(server)


def log_in(page: Page, stack: Stack, user: str) -> None:
    page.goto(f"{stack.public_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/(hub|user)/.*"))


def open_spawn_page(page: Page, stack: Stack) -> None:
    """Ask for the default server on the spawn page (its progress events are recorded)."""
    page.add_init_script(RECORD_PROGRESS)
    page.goto(f"{stack.public_url}/hub/spawn")


def start_from_spawn_page(page: Page, stack: Stack, user: str) -> None:
    """Start the default server from the spawn page and wait for JupyterLab's launcher."""
    open_spawn_page(page, stack)
    page.wait_for_url(re.compile(re.escape(user_path(user)) + "lab.*"), timeout=180_000)
    wait_for_lab(page)


def progress_messages(page: Page) -> list[str]:
    return page.evaluate("JSON.parse(sessionStorage.getItem('spawn-progress') || '[]')")


def open_lab(page: Page, stack: Stack, user: str, server: str = "") -> None:
    page.goto(f"{stack.public_url}{user_path(user, server)}lab")
    wait_for_lab(page)


def wait_for_lab(page: Page) -> None:
    """JupyterLab is up: its file browser shows (a notebook of a restored workspace may stand for the launcher)."""
    page.wait_for_selector(".jp-DirListing-content", timeout=120_000)


def listed_files(page: Page) -> set[str]:
    """The names JupyterLab's file browser shows (the server's root: the user's home)."""
    page.wait_for_selector(".jp-DirListing-content")
    return set(page.locator(".jp-DirListing-content .jp-DirListing-itemText").all_inner_texts())


def wait_listed(page: Page, *names: str) -> set[str]:
    """Wait until the file browser lists every one of ``names``; what it lists."""
    seen: list[set[str]] = [set()]

    def listed() -> bool:
        seen[0] = listed_files(page)
        return set(names) <= seen[0]

    wait_until(listed, timeout=30, interval=0.5, what=f"the file browser to list {names}",
               describe=lambda: f"it lists {sorted(seen[0])}")
    return seen[0]


def new_notebook(page: Page) -> None:
    """A new notebook from the launcher, its kernel idle."""
    card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
    card.wait_for(timeout=60_000)
    card.click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)


def run_cell(page: Page, code: str) -> str:
    """Type ``code`` into the notebook's last cell, run it, and return its output."""
    cell = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").last
    cell.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(code)
    output = page.locator(".jp-NotebookPanel .jp-Cell").last.locator(".jp-OutputArea-output").first
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
    return output.inner_text().strip()


def save_notebook(page: Page, name: str) -> None:
    """Save the open, new notebook as ``name`` (JupyterLab asks for a name on a first save) and wait until
    its tab is no longer marked unsaved.

    The kernel must be idle first: the cell's last execution metadata may
    arrive after its output and mark the notebook changed again.
    """
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.locator('.jp-NotebookPanel-toolbar [data-command="docmanager:save"]').first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input[type=text]").fill(name)
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")
    page.wait_for_selector(f".lm-TabBar-tab.jp-mod-current[title^='Name: {name}']", timeout=30_000)
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", state="detached", timeout=30_000)


def stop_from_home_page(page: Page, stack: Stack, user: str) -> Page:
    """Stop the default server with the home page's button, make sure the hub took the request; the home page.

    The lab page is closed first: its kernel websockets then end before the
    click, not while the stop request is on its way through the proxy.
    """
    home = page.context.new_page()
    page.close()
    home.goto(f"{stack.public_url}/hub/home")
    home.wait_for_selector("#stop", state="visible")
    # the button works once the page's scripts (loaded after the page) have bound it: a click before that does
    # nothing, so click again until the stop request goes out
    home.wait_for_load_state("networkidle")
    for _attempt in range(3):
        try:
            with home.expect_response(lambda r: r.request.method == "DELETE" and "/hub/api/users/" in r.url,
                                      timeout=15_000) as answer:
                home.click("#stop")
            break
        except PlaywrightTimeout:
            continue
    else:
        raise AssertionError("the home page's Stop button never sent the stop request")
    assert answer.value.status in (202, 204), answer.value.status
    wait_until(lambda: server_model(stack, user) is None, timeout=120, interval=0.5,
               what=f"the hub to record the server of {user} stopped",
               describe=lambda: f"the hub says {server_model(stack, user)}")
    return home


def wait_app_gone(stack: Stack, timeout: float = 60) -> None:
    wait_until(lambda: stack.emulator_apps() == {}, timeout=timeout, interval=0.5,
               what="every container app to be gone", describe=lambda: f"apps: {sorted(stack.emulator_apps())}")


def wait_until_ready(stack: Stack, user: str, server: str = "", timeout: float = 180) -> dict:
    """The hub's model of the server once it is ready."""
    seen: list[dict | None] = [None]

    def ready() -> dict | None:
        seen[0] = model = server_model(stack, user, server)
        return model if model and model.get("ready") else None

    return wait_until(ready, timeout=timeout, interval=0.5, what=f"the server {server!r} of {user} to be ready",
                      describe=lambda: f"the hub says {seen[0]}")
