"""The in-process API inside one event loop, driven by the SDK's async client."""

from __future__ import annotations

import asyncio
import copy
import ssl
import time

import aiohttp
from azure.core.credentials import AccessToken
from azure.mgmt.appcontainers.aio import ContainerAppsAPIClient
from emulator_helpers import echo_container_app, pid_alive

from local.emulator import Emulator
from local.emulator.errors import ArmError


class AsyncStaticToken:
    async def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken("emulator", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


async def test_emulator_in_the_same_loop(tmp_path):
    # provisioning outlasts the SDK's initial request by far, so the app is still InProgress right after it
    async with Emulator(state_dir=tmp_path / "emu", retry_after=None, provisioning_delay=1.0) as emu:
        client = ContainerAppsAPIClient(AsyncStaticToken(), emu.subscription_id, base_url=emu.arm_endpoint,
                                        connection_verify=str(emu.ca_bundle), polling_interval=0.05)
        async with client:
            poller = await client.container_apps.begin_create_or_update(
                emu.resource_group, "async-app", echo_container_app(emu.environment_id)
            )
            assert emu.apps["async-app"].provisioning_state == "InProgress"
            app = await poller.result()
            assert app.properties.running_status == "Running"
            fqdn = app.properties.configuration.ingress.fqdn
            async with aiohttp.ClientSession(trust_env=False) as session:
                async with session.get(f"http://{fqdn}/user/x/") as answer:
                    assert (await answer.json())["headers"]["Host"] == fqdn
                trust_test_ca = ssl.create_default_context(cafile=str(emu.ca_bundle))
                async with session.get(f"{emu.arm_endpoint}/_emulator/stats", ssl=trust_test_ca) as stats:
                    assert (await stats.json())["creates"] == 1
            pid = emu.apps["async-app"].pid
        assert pid_alive(pid)
    assert not pid_alive(pid)  # stop() ended the app's process


async def test_concurrent_puts_of_a_new_app_create_it_once(tmp_path):
    """ARM serialises writes to one resource: of two racing PUTs one creates, the other is refused (409)."""
    async with Emulator(state_dir=tmp_path / "emu", retry_after=None, provisioning_delay=1.0) as emu:
        body = echo_container_app(emu.environment_id)
        # straight into the resource layer, so both writes are in flight at once (over HTTP the second
        # request would usually arrive after the first had already registered the app)
        outcomes = await asyncio.gather(
            emu._operations.put("racy-app", copy.deepcopy(body)),
            emu._operations.put("racy-app", copy.deepcopy(body)),
            return_exceptions=True,
        )
        created = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, ArmError)]
        assert len(created) == 1 and len(refused) == 1, outcomes
        assert refused[0].status == 409
        assert emu.stats["creates"] == 1
        assert list(emu.apps) == ["racy-app"]
