"""Users' files in a real browser: they survive a stop, a parked server, a cull and a hub restart, and stay theirs.

Each stack is the whole system of ``make demo`` (Azurite, the ACA emulator
with its Azure Files share, the functions, a hub), with the homes the
deployment gives every user: one folder of the share per user, made and
recorded by the functions, mounted at ``/home/jovyan`` by every server of
that user.
"""

from __future__ import annotations

import re
import secrets

import pytest
from azure.data.tables import TableClient
from lab import (
    PASSWORD,
    hub_api,
    listed_files,
    log_in,
    new_notebook,
    open_lab,
    run_cell,
    save_notebook,
    server_model,
    start_from_spawn_page,
    stop_from_home_page,
    wait_app_gone,
    wait_listed,
    wait_until_ready,
)
from waiting import wait_until

from acaspawner.naming import home_folder
from local.procs import free_port
from local.stack import Stack, StackOptions

ALICE, BOB = "alice", "bob"
# what the user types into the first cell: it writes a file of their own into the working directory (the home)
WRITE_RESULTS = "print(open('results.csv', 'w').write('run,score'), 'bytes saved')"


def make_stack(tmp_path_factory, **function_settings: str) -> Stack:
    return Stack(StackOptions(port=free_port(), password=PASSWORD, state_dir=tmp_path_factory.mktemp("stack"),
                              test_admin_token=secrets.token_hex(16), function_settings=function_settings))


def create_notebook_and_file(page) -> None:
    """In JupyterLab: a new notebook whose cell writes results.csv, saved as analysis.ipynb."""
    new_notebook(page)
    assert run_cell(page, WRITE_RESULTS) == "9 bytes saved"
    save_notebook(page, "analysis.ipynb")
    wait_listed(page, "analysis.ipynb", "results.csv")


def open_notebook_showing(page, stack: Stack, user: str, text: str) -> None:
    """Open analysis.ipynb in JupyterLab and wait until one of its cells shows ``text``."""
    page.goto(f"{stack.public_url}/user/{user}/lab/tree/analysis.ipynb")
    page.locator(".jp-NotebookPanel .jp-Cell .cm-content", has_text=text).first.wait_for(timeout=60_000)


def home_owners(stack: Stack) -> dict[str, str]:
    """Folder → user, as the functions recorded them in the status table."""
    table = TableClient.from_connection_string(stack.azurite.connection_string, "acaservers")
    with table:
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": f"{stack.options.hub_id}~homes"})
        return {row["RowKey"]: row["user"] for row in rows}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with make_stack(tmp_path_factory, ACA_HOME_DELETE_ON_DELETE="true") as running:
        yield running


def test_files_outlive_stops_and_hub_restarts_and_stay_their_users(stack, open_browser):
    page = open_browser()
    log_in(page, stack, ALICE)
    start_from_spawn_page(page, stack, ALICE)
    create_notebook_and_file(page)
    folder = stack.home_share / home_folder(ALICE)
    # in the share, under alice's folder, whatever her app is called
    assert (folder / "results.csv").read_text() == "run,score"
    assert (folder / "analysis.ipynb").is_file()
    assert home_owners(stack) == {home_folder(ALICE): ALICE}

    # stop from the home page: the app is deleted; start again: a new app mounts the same folder
    page = stop_from_home_page(page, stack, ALICE)
    wait_app_gone(stack)
    start_from_spawn_page(page, stack, ALICE)
    wait_listed(page, "analysis.ipynb", "results.csv")
    open_notebook_showing(page, stack, ALICE, "open('results.csv', 'w')")

    # the hub restarts (a roll-out): the server keeps running, and the files are there
    stack.restart_hub()
    wait_until_ready(stack, ALICE)
    # the restarted hub found the URL it had stored for the server (JupyterHub warns and rewrites one that differs)
    assert "had invalid url" not in (stack.logs / "hub.log").read_text()
    open_lab(page, stack, ALICE)
    wait_listed(page, "analysis.ipynb", "results.csv")

    # a named server of alice mounts the same home (one home per user, as zero-to-jupyterhub)
    hub_api(stack, f"/users/{ALICE}/servers/scratch", "POST", {})
    wait_until_ready(stack, ALICE, "scratch")
    open_lab(page, stack, ALICE, "scratch")
    wait_listed(page, "analysis.ipynb", "results.csv")
    assert len(stack.emulator_apps()) == 2 and sorted(p.name for p in stack.home_share.iterdir()) == [
        home_folder(ALICE)]

    # bob, at another computer, sees none of alice's files: not in JupyterLab, not from a kernel
    other = open_browser()
    log_in(other, stack, BOB)
    start_from_spawn_page(other, stack, BOB)
    assert not {"results.csv", "analysis.ipynb"} & listed_files(other)
    new_notebook(other)
    seen = run_cell(other, "import os; print(sorted(os.listdir(os.environ['HOME'])), os.getcwd() == os.environ['HOME'])")
    assert "results.csv" not in seen and seen.endswith("True"), seen
    (stack.home_share / home_folder(BOB) / "bob.txt").write_text("bob's")

    # deleting alice (JupyterHub's REST API, as an admin) removes her folder and record, nothing else;
    # JupyterHub stops her default server itself, a named one the admin stops first
    hub_api(stack, f"/users/{ALICE}/servers/scratch", "DELETE")
    wait_until(lambda: server_model(stack, ALICE, "scratch") is None, timeout=120, interval=0.5,
               what="alice's named server to stop")
    hub_api(stack, f"/users/{ALICE}", "DELETE")
    wait_until(lambda: not folder.exists(), timeout=120, interval=0.5, what="alice's home folder to be removed",
               describe=lambda: f"the share holds {sorted(p.name for p in stack.home_share.iterdir())}")
    assert sorted(p.name for p in stack.home_share.iterdir()) == [home_folder(BOB)]
    assert (stack.home_share / home_folder(BOB) / "bob.txt").read_text() == "bob's"
    assert home_owners(stack) == {home_folder(BOB): BOB}
    assert server_model(stack, BOB) is not None  # bob's server runs on


def test_a_parked_server_is_resumed_with_its_files(tmp_path_factory, open_browser):
    with make_stack(tmp_path_factory, ACA_STOP_MODE="stop") as parked:
        page = open_browser()
        log_in(page, parked, ALICE)
        start_from_spawn_page(page, parked, ALICE)
        create_notebook_and_file(page)
        (name,) = parked.emulator_apps()

        page = stop_from_home_page(page, parked, ALICE)
        wait_until(lambda: parked.emulator_apps()[name]["running_status"] == "Stopped", timeout=60, interval=0.5,
                   what="the app to be parked", describe=lambda: str(parked.emulator_apps()))
        start_from_spawn_page(page, parked, ALICE)
        wait_listed(page, "analysis.ipynb", "results.csv")
        # the same app, started again: not a new one
        assert list(parked.emulator_apps()) == [name]
        stats = parked.emulator_stats()
        assert (stats["creates"], stats["stops"], stats["starts"], stats["deletes"]) == (1, 1, 1, 0), stats


def test_files_outlive_the_culler(tmp_path_factory, open_browser):
    # the culler runs every 5 s and stops servers idle for 30 s
    with make_stack(tmp_path_factory, ACA_CULL_SCHEDULE="*/5 * * * * *", ACA_CULL_TIMEOUT="30") as culled:
        page = open_browser()
        log_in(page, culled, ALICE)
        start_from_spawn_page(page, culled, ALICE)
        create_notebook_and_file(page)
        home = page.context.new_page()
        page.close()  # alice leaves: the server goes idle
        wait_until(lambda: server_model(culled, ALICE) is None, timeout=180, interval=1,
                   what="the culler to stop alice's idle server",
                   describe=lambda: f"the hub says {server_model(culled, ALICE)}")
        wait_app_gone(culled)
        assert re.search(r"Culling .*alice", (culled.logs / "functions.log").read_text())

        start_from_spawn_page(home, culled, ALICE)
        wait_listed(home, "analysis.ipynb", "results.csv")
