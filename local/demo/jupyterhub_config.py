"""JupyterHub config of the local demo: the production routing settings, local parts.

``local.stack`` starts the hub with this file and passes everything through
``ACA_DEMO_*`` environment variables; the routing settings are the ones an
Azure deployment uses (see ``examples/azure/jupyterhub_config.py``).
"""

import os

from acaspawner.culler_service import culler_role, culler_service
from acaspawner.status_service import status_service

c = get_config()  # noqa: F821 - provided by JupyterHub

env = os.environ
state = env["ACA_DEMO_STATE_DIR"]
public_url = env["ACA_DEMO_PUBLIC_URL"]

# --- routing: what makes the browser reach a user's app -------------------------------
c.JupyterHub.public_url = public_url
c.JupyterHub.bind_url = public_url
# CHP must rewrite Host to the target, or the ingress routes /user/* back to the hub (HTTP 431)
proxy = [env["ACA_DEMO_CHP"]]
if env.get("ACA_DEMO_CHANGE_ORIGIN", "1") == "1":
    proxy.append("--change-origin")
c.ConfigurableHTTPProxy.command = proxy
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['ACA_DEMO_PROXY_API_PORT']}"
# single-user servers reach the hub API at its internal address, not the public one
c.JupyterHub.hub_bind_url = env["ACA_DEMO_HUB_API_URL"]
c.JupyterHub.hub_connect_url = env["ACA_DEMO_HUB_API_URL"]

# --- local state ---------------------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"
c.JupyterHub.cleanup_servers = False  # servers are container apps: they outlive a hub restart
c.JupyterHub.allow_named_servers = True

# --- demo login: any user name, one password ----------------------------------------------
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = env["ACA_DEMO_PASSWORD"]
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}

# --- the spawner -----------------------------------------------------------------------------
c.JupyterHub.spawner_class = "aca"
c.AcaSpawner.hub_id = env["ACA_HUB_ID"]
c.AcaSpawner.storage_connection_string = env["ACA_DEMO_STORAGE"]
c.AcaSpawner.sealing_keys = env["ACA_SEALING_KEYS"]
c.AcaSpawner.image = "quay.io/jupyter/base-notebook:latest"
c.AcaSpawner.cpu = 0.5
c.AcaSpawner.memory = "1Gi"
c.AcaSpawner.start_timeout = int(env.get("ACA_DEMO_START_TIMEOUT", "180"))
c.AcaSpawner.status_poll_interval = 5
c.AcaSpawner.report_interval = 5  # the gauges on /hub/metrics follow the demo closely
# every server of a user mounts the user's folder of the homes share (the functions make and mount it)
c.AcaSpawner.home_storage_name = env.get("ACA_HOME_STORAGE_NAME", "")
if env.get("ACA_DEMO_ALLOW_ORIGIN", "1") != "1":
    # regression switch for the tests: no --ServerApp.allow_origin (the kernel websocket is refused)
    from acaspawner.spawner import AcaSpawner

    class SpawnerWithoutOriginFix(AcaSpawner):
        def _allow_origin(self) -> str:
            return ""

    c.JupyterHub.spawner_class = SpawnerWithoutOriginFix

# --- the idle culler (an Azure Function) calls the hub API as this service ----------------
c.JupyterHub.services = [culler_service(env["ACA_HUB_API_TOKEN"])]
c.JupyterHub.load_roles = [culler_role(cull_users=env.get("ACA_CULL_USERS", "").lower() == "true")]
# --- the admins' status page (/services/aca-status/): environments, starts, failures, timers ------------
c.JupyterHub.services.append(status_service({"ACA_HUB_ID": env["ACA_HUB_ID"],
                                             "ACA_STORAGE_CONNECTION_STRING": env["ACA_DEMO_STORAGE"]},
                                            port=int(env["ACA_DEMO_STATUS_PORT"])))

if env.get("ACA_DEMO_TEST_ADMIN_TOKEN"):
    # the end-to-end tests inspect the hub through this service; the demo itself never sets it
    c.JupyterHub.services.append({"name": "e2e-admin", "api_token": env["ACA_DEMO_TEST_ADMIN_TOKEN"]})
    c.JupyterHub.load_roles.append({"name": "e2e-admin", "services": ["e2e-admin"],
                                    "scopes": ["admin:users", "admin:servers", "tokens", "read:metrics"]})
