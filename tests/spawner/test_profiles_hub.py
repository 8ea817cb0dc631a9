"""KubeSpawner-shaped profiles through a real JupyterHub (``jupyterhub.tests.mocking.MockHub``, with its proxy).

The hub's REST API takes ``user_options`` as KubeSpawner users send them:
options outside the profile list answer 400 and nothing reaches the queue; a
listed choice starts the container app it names. The spawn page renders the
form and its post starts the chosen profile. The fake worker stands in for the
functions (Azurite queue and table), and a tiny HTTP server for the
single-user server JupyterHub waits for.
"""

from __future__ import annotations

import json
import re

import pytest
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import api_request, async_requests, get_page, public_host
from jupyterhub.utils import url_path_join
from kubespawner_examples import KUBESPAWNER_TESTS
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from acaspawner.spawner import AcaSpawner
from local.procs import NODE_BIN, free_port


class FakeSingleUser(web.RequestHandler):
    def get(self, *args):
        self.set_header("X-JupyterHub-Version", "6.1.1")
        self.write({"version": "2.0.0"})


@pytest.fixture
async def singleuser_url():
    port = free_port()
    server = HTTPServer(web.Application([(r"/.*", FakeSingleUser)]))
    server.listen(port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
async def hub(spawner_kwargs, worker, singleuser_url, tmp_path, monkeypatch):
    """A JupyterHub (and its configurable-http-proxy) whose spawner is AcaSpawner with KubeSpawner's test profiles."""
    monkeypatch.chdir(tmp_path)
    worker.url_for = lambda request: singleuser_url
    config = Config()
    config.JupyterHub.spawner_class = AcaSpawner
    config.ConfigurableHTTPProxy.command = [str(NODE_BIN / "configurable-http-proxy")]
    for name, value in spawner_kwargs.items():
        setattr(config.AcaSpawner, name, value)
    config.AcaSpawner.allow_origin = "http://127.0.0.1"
    config.AcaSpawner.profile_list = KUBESPAWNER_TESTS
    app = MockHub.instance(config=config)
    await app.initialize([])
    await app.start()
    try:
        yield app
    finally:
        app.log.handlers = []
        MockHub.clear_instance()

        async def keep_the_loop():  # JupyterHub would cancel every task of the test's loop (fixtures' too)
            pass

        app.shutdown_cancel_tasks = keep_the_loop
        await app.stop()  # stops the servers (through AcaSpawner.stop), the proxy and the hub's HTTP server


def started(worker) -> list:
    return [r for r in worker.received if r.op.value == "start"]


@pytest.mark.parametrize(
    "options, words",
    [
        ({"profile": "no-such-profile"}, "unknown server profile"),
        ({"profile": "test-choices", "image": "latest"}, "unknown choice 'latest'"),
        ({"profile": "test-choices", "image--unlisted-choice": "docker.io/evil/miner:1"}, "is not allowed"),
        ({"profile": "training-datascience", "image": "pytorch"}, "unsupported server options: image"),
        ({"profile": "training-datascience", "image_spec": "docker.io/evil/miner:1"}, "unsupported server options"),
    ],
)
async def test_rest_api_options_outside_the_list_answer_400(hub, worker, options, words):
    response = await api_request(hub, "users", "user", "server", method="post", data=json.dumps(options))
    assert response.status_code == 400, response.text
    assert words in response.json()["message"]
    assert started(worker) == []
    user = hub.users["user"]
    assert not user.spawner.active and user.spawner.generation == 0


async def test_rest_api_starts_a_listed_choice(hub, worker):
    options = {"profile": "test-choices", "image": "pytorch"}
    response = await api_request(hub, "users", "user", "server", method="post", data=json.dumps(options))
    assert response.status_code in (201, 202), response.text
    spawner = hub.users["user"].spawner
    if response.status_code == 202:
        await spawner._spawn_future
    (request,) = started(worker)
    assert request.spec.image == "pangeo/pytorch-notebook:master"
    assert (request.spec.cpu, request.spec.memory) == (1.0, "2Gi")
    assert spawner.user_options == options and spawner.ready


async def test_spawn_page_renders_the_form_and_its_post_starts_the_choice(hub, worker):
    cookies = await hub.login_user("user")
    page = await get_page("spawn", hub, cookies=cookies)
    assert page.status_code == 200
    assert 'name="profile-option-test-choices--image"' in page.text
    assert re.search(r'name="profile-option-test-choices--image--unlisted-choice"[^>]*pattern="\^pangeo/\.\*\$"',
                     page.text)
    form = {
        "profile": "test-choices",
        "profile-option-test-choices--image": "unlisted-choice",
        "profile-option-test-choices--image--unlisted-choice": "pangeo/test:latest",
        "profile-option-no-regex--image": "tf",
    }
    response = await async_requests.post(url_path_join(public_host(hub), hub.hub.base_url, "spawn"), data=form,
                                         params={"_xsrf": cookies["_xsrf"]}, cookies=cookies, allow_redirects=False)
    assert response.status_code == 302, response.text
    spawner = hub.users["user"].spawner
    if spawner._spawn_future is not None:
        await spawner._spawn_future
    (request,) = started(worker)
    assert request.spec.image == "pangeo/test:latest"
    assert spawner.user_options == {"profile": "test-choices", "image--unlisted-choice": "pangeo/test:latest"}
