"""End to end in a real browser: Azurite, the ACA emulator, the functions, a hub, chromium.

The main flow proves a user reaches a working JupyterLab in a container app;
the regression flows prove each shipped routing setting is needed.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path

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
from waiting import wait_until

from local.procs import free_port
from local.stack import Stack, StackOptions

USER = "Émilie.O'Brien+test"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


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
    # the culler runs often, so the status page has a timer's run to show (its idle timeout spares every server here)
    with make_stack(tmp_path_factory, environment_cores=(0.25, 10),
                    function_settings={"ACA_CULL_SCHEDULE": "*/10 * * * * *"}) as running:
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


def test_admins_status_page_shows_capacity_failures_and_timers_and_others_are_refused(stack, open_browser):
    # a start that fails in Azure (the image cannot be pulled): the student is told a request id
    hub_api(stack, "/users/page-fail", "POST")
    stack.set_emulator_faults(fail_images=["*"])
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            hub_api(stack, "/users/page-fail/server", "POST")
    finally:
        stack.set_emulator_faults(fail_images=[])
    message = json.loads(refused.value.read())["message"]
    request_id = re.search(r"request id ([0-9a-f-]{36})", message)[1]

    page = open_browser()
    log_in(page, stack, "admin")
    url = f"{stack.public_url}/services/aca-status/"

    def shown() -> str:
        page.goto(url)
        return page.inner_text("body")

    wait_until(lambda: "aca-idle-culler" in shown(), timeout=90, interval=3, what="the culler's run on the page",
               describe=lambda: page.inner_text("body")[-2000:])
    headers = page.goto(url).headers  # nothing on the page may run script or be framed by another site
    assert headers["content-security-policy"].startswith("default-src 'none'") and "frame-ancestors 'none'" in \
        headers["content-security-policy"] and headers["cache-control"] == "no-store", headers
    failed = page.inner_text('[data-testid="failed"]')
    assert "page-fail" in failed and request_id in failed and "ContainerAppOperationError" in failed, failed
    environments = page.inner_text('[data-testid="environments"]')
    # both environments of the pool, the one no server fits in (0.25 cores) too
    assert "cae-env-2\t" in environments and "cae-emulator\t0\t0\t0.25\t0.25" in environments, environments
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"status page screenshot: {shot}")

    # a student is refused by the hub's OAuth: the page is for those with access to the service (admins)
    student = open_browser()
    log_in(student, stack, "student")
    response = student.goto(url)
    assert response.status == 403, (response.status, student.inner_text("body")[:500])
    assert "Failed starts" not in student.content()

    # the hub's gauges, read from the same report: each environment's budget and what is left of it
    wait_until(lambda: 'jupyterhub_aca_environment_cores{environment="cae-env-2",kind="budget"} 10.0'
               in hub_metrics(stack), timeout=60, interval=2, what="the environment gauges on /hub/metrics",
               describe=lambda: "\n".join(line for line in hub_metrics(stack).splitlines() if "aca_" in line))
    scraped = hub_metrics(stack)
    assert 'jupyterhub_aca_environment_cores{environment="cae-emulator",kind="left"} 0.25' in scraped, scraped[-3000:]
    assert 'jupyterhub_aca_timer_last_run_errors{timer="aca-idle-culler"} 0.0' in scraped, scraped[-3000:]


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
