"""A click served by a warm server, in a real browser: seconds to JupyterLab, the user's own home, given back at stop.

The stack keeps one warm server of the demo hub's kind (``make demo`` keeps
two). The user's start is bound to it by the functions (the home moved in by
a rename), the hub hands it the user's claim, and the launcher becomes the
user's server; the stop deletes it, moves the home back, and the pool makes
a new warm server.
"""

from __future__ import annotations

import secrets
import time

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from lab import (
    PASSWORD,
    log_in,
    new_notebook,
    run_cell,
    start_from_spawn_page,
    stop_from_home_page,
    wait_listed,
)
from waiting import wait_until

from acaspawner.naming import home_folder
from local.procs import free_port
from local.stack import Stack, StackOptions

USER = "warm-wendy"


def warm_servers(stack: Stack) -> dict[str, str]:
    """Warm server name → state, from the functions' rows."""
    with TableClient.from_connection_string(stack.azurite.connection_string, "acaservers") as table:
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": f"{stack.options.hub_id}~slots"})
        try:
            return {row["RowKey"]: row["state"] for row in rows}
        except ResourceNotFoundError:  # before the functions' first run makes the table
            return {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = StackOptions(port=free_port(), password=PASSWORD, state_dir=tmp_path_factory.mktemp("warm"),
                           test_admin_token=secrets.token_hex(16), warm_pool_size=1)
    with Stack(options) as running:
        yield running


def test_a_click_is_served_by_a_warm_server(stack, browser_page):
    wait_until(lambda: "ready" in warm_servers(stack).values(), timeout=180, interval=1,
               what="a warm server to be ready", describe=lambda: str(warm_servers(stack)))
    (slot,) = warm_servers(stack)
    page = browser_page
    log_in(page, stack, USER)
    clicked = time.monotonic()
    start_from_spawn_page(page, stack, USER)
    to_lab = time.monotonic() - clicked
    print(f"\nwarm start: spawn page to JupyterLab's file browser in {to_lab:.1f} s")
    # the user's server is the warm one: no app was made for this start (only, maybe, the pool's refill)
    assert slot in stack.emulator_apps()
    assert all(name.startswith("ws-") for name in stack.emulator_apps()), stack.emulator_apps()
    assert warm_servers(stack)[slot] == "bound"
    home = stack.home_share / "slots" / slot / "home"
    assert home.is_dir() and not (stack.home_share / home_folder(USER)).exists()

    new_notebook(page)
    assert run_cell(page, "import os; print(os.environ['JUPYTERHUB_USER'], 'ACA_SLOT_KEY' in os.environ)") \
        == f"{USER} False"  # the user's server, and the warm server's key is not in it
    print(f"warm start: click to a cell's output in {time.monotonic() - clicked:.1f} s (a new notebook, its kernel)")
    assert run_cell(page, "print(open('warm.txt', 'w').write('kept'))") == "4"
    wait_listed(page, "warm.txt")
    assert (home / "warm.txt").read_text() == "kept"

    stop_from_home_page(page, stack, USER)
    wait_until(lambda: slot not in stack.emulator_apps(), timeout=120, interval=0.5, what="the warm server to go")
    folder = stack.home_share / home_folder(USER)
    wait_until(lambda: (folder / "warm.txt").is_file(), timeout=60, interval=0.5, what="the home to come back")
    assert not (stack.home_share / "slots" / slot).exists()
    # the pool has a new warm server for the next click
    wait_until(lambda: [s for s, state in warm_servers(stack).items() if s != slot and state == "ready"],
               timeout=180, interval=1, what="a new warm server", describe=lambda: str(warm_servers(stack)))
