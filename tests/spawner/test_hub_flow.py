"""AcaSpawner driven by JupyterHub's own spawn and stop logic (``User.spawn`` / ``User.stop``).

The fake worker reports a URL on loopback where a tiny HTTP server stands in
for the single-user server, so JupyterHub's wait for the server to answer
succeeds as it would against a container app's internal ingress.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from jupyterhub import orm
from jupyterhub.user import User
from prometheus_client import REGISTRY
from spawner_support import PUBLIC_URL, make_hub, wait_until
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from acaspawner.contract import Phase
from acaspawner.errors import SpawnException
from acaspawner.spawner import AcaSpawner
from local.procs import free_port


class FakeSingleUser(web.RequestHandler):
    def get(self, *args):
        self.set_header("X-JupyterHub-Version", "6.1.1")
        self.write({"version": "2.0.0"})


@pytest.fixture
async def singleuser_port():
    port = free_port()
    server = HTTPServer(web.Application([(r"/.*", FakeSingleUser)]))
    server.listen(port, "127.0.0.1")
    yield port
    server.stop()


@pytest.fixture
def hub_user(db, spawner_kwargs):
    """A JupyterHub ``User`` whose spawners are AcaSpawners configured through traitlets config."""
    if db.query(orm.OAuthClient).filter_by(identifier="jupyterhub").one_or_none() is None:
        db.add(orm.OAuthClient(identifier="jupyterhub"))
        db.commit()
    config = Config()
    for name, value in spawner_kwargs.items():
        setattr(config.AcaSpawner, name, value)
    settings = {
        "public_url": urlparse(PUBLIC_URL),
        "hub": make_hub(),
        "spawner_class": AcaSpawner,
        "config": config,
        "internal_ssl": False,
    }
    return User(db.query(orm.User).filter_by(name="user").one(), settings)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"jupyterhub_aca_{name}", labels) or 0.0


async def test_jupyterhub_spawns_and_stops(hub_user, worker, singleuser_port):
    worker.url_for = lambda request: f"http://127.0.0.1:{singleuser_port}"
    before = {part: sample("spawn_duration_seconds_count", part=part) for part in ("queue", "azure", "hub")}
    full_reads = sample("status_reads_total", kind="full")
    await hub_user.spawn()
    # where the start's time went, in JupyterHub's own registry (what /hub/metrics serves)
    assert {part: sample("spawn_duration_seconds_count", part=part) - n for part, n in before.items()} == \
        {"queue": 1, "azure": 1, "hub": 1}
    assert sample("status_reads_total", kind="full") > full_reads
    spawner = hub_user.spawners[""]
    assert isinstance(spawner, AcaSpawner)
    assert spawner.server.url == f"http://127.0.0.1:{singleuser_port}/user/user/"
    # JupyterHub saved the state after start(): app name, generation, URL
    state = spawner.orm_spawner.state
    assert state["server_key"] == spawner.server_key and state["last_url"] == f"http://127.0.0.1:{singleuser_port}"
    assert await spawner.poll() is None

    started = spawner.generation
    await hub_user.stop()
    assert spawner.orm_spawner.server is None
    assert spawner.orm_spawner.state["generation"] > started
    assert "last_url" not in spawner.orm_spawner.state
    status = spawner.watcher.get(spawner.server_key)
    assert status.phase is Phase.STOPPED and status.generation == spawner.generation
    assert [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"]


async def test_jupyterhub_reports_the_functions_failure(hub_user, worker):
    worker.failing_images["missing:0"] = ("The image could not be pulled", "ImagePullFailure")
    hub_user.settings["config"].AcaSpawner.image = "missing:0"
    failures = sample("spawn_failures_total", code="ImagePullFailure")
    with pytest.raises(SpawnException, match="could not be pulled") as info:
        await hub_user.spawn()
    assert sample("spawn_failures_total", code="ImagePullFailure") == failures + 1
    spawner = hub_user.spawners[""]
    (start,) = [r for r in worker.received if r.server_key == spawner.server_key and r.op.value == "start"]
    # the request it happened to, as the functions' log lines and ARM's activity log name it
    assert info.value.jupyterhub_message == \
        f"The image could not be pulled (ImagePullFailure; request id {start.request_id})"
    assert spawner.orm_spawner.server is None  # JupyterHub cleaned up after the failed start
    # the spawner asked for the half-created app to be removed; JupyterHub's poll saw it gone, so no second stop
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])
    assert spawner.orm_spawner.state["last_op"] == "stop"
