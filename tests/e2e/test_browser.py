"""End to end in a real browser: Azurite, the ACA emulator, the functions, a hub, chromium.

The main flow proves a user reaches a working JupyterLab in a container app;
the regression flows prove each shipped routing setting is needed.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.request

import pytest
from lab import (
    PASSWORD,
    hub_api,
    hub_metrics,
    log_in,
    new_notebook,
    open_spawn_page,
    progress_messages,
    run_cell,
    start_from_spawn_page,
    stop_from_home_page,
    user_path,
    wait_app_gone,
    wait_until_ready,
)

from local.procs import free_port
from local.stack import Stack, StackOptions

USER = "Émilie.O'Brien+test"


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


def test_user_reaches_jupyterlab_runs_a_cell_and_stops(stack, browser_page):
    page = browser_page
    log_in(page, stack, USER)
    # JupyterLab, through CHP and the emulator's ingress
    start_from_spawn_page(page, stack, USER)
    # the spawn page showed the hub's request, then the functions' progress relayed through the table
    messages = progress_messages(page)
    assert any("waiting for azure container apps" in m.lower() for m in messages), messages
    assert any("creating container app" in m.lower() for m in messages), messages
    (app,) = stack.emulator_apps().values()
    assert app["environment_id"].endswith("/managedEnvironments/cae-env-2"), app["environment_id"]

    # a notebook; its cell runs through the kernel websocket
    new_notebook(page)
    output = run_cell(page, "print(6 * 7, 'from', __import__('os').environ['JUPYTERHUB_USER'])")
    assert output == f"42 from {USER.lower()}"  # JupyterHub lower-cases names

    # stop from the hub's control panel: the hub takes the request, and the container app is gone afterwards
    stop_from_home_page(page, stack, USER)
    wait_app_gone(stack)

    # what Prometheus scrapes from the hub: where the start's time went, and the status reads
    scraped = hub_metrics(stack)
    for part in ("queue", "azure", "hub"):
        assert f'jupyterhub_aca_spawn_duration_seconds_count{{part="{part}"}} 1.0' in scraped, scraped[-3000:]
    assert re.search(r'jupyterhub_aca_status_reads_total\{kind="full"\} [1-9]', scraped), scraped[-3000:]
    assert re.search(r'jupyterhub_aca_status_rows_read_total\{kind="changed"\} [1-9]', scraped), scraped[-3000:]


def test_without_change_origin_the_proxy_loops_into_431(tmp_path_factory, browser_page):
    with make_stack(tmp_path_factory, change_origin=False) as broken:
        page = browser_page
        log_in(page, broken, "loop")
        open_spawn_page(page, broken)
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
        open_spawn_page(page, broken)
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
