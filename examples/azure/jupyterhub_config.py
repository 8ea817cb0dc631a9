"""An example JupyterHub configuration for Azure Container Apps with AcaSpawner.

Copy it, replace the <placeholders>, and run the hub as a container app with
exactly one replica (JupyterHub does not run in parallel) and external
ingress on port 8000 (the proxy). Every setting below marked ROUTING is
needed for browsers to reach users' servers; the comments say why.
"""

import os

from acaspawner.culler_service import culler_role, culler_service

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# The hub's public address, as users type it into their browser.
PUBLIC_URL = "https://<hub app>.<environment default domain>"  # e.g. https://jupyterhub.happyhill-1234.westeurope.azurecontainerapps.io
# The hub app's name inside the ACA environment: apps reach each other at http://<name> over internal ingress.
HUB_APP = "<hub app name>"

# --- routing ------------------------------------------------------------------------------------

# ROUTING: the hub must know its public URL. It is the Origin browsers send, which
# AcaSpawner passes to every server as --ServerApp.allow_origin (see below), and
# the base of the links JupyterHub hands out.
c.JupyterHub.public_url = PUBLIC_URL

# ROUTING: configurable-http-proxy must rewrite the Host header to the target's.
# ACA's envoy ingress routes by Host: with the browser's Host (the hub's) the
# request to a user's app lands on the hub again, round and round, until
# X-Forwarded-For overflows the header limit and envoy answers HTTP 431.
# A list, so JupyterHub passes the flag as one argument (a flag since CHP 3.1).
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy", "--change-origin"]

# ROUTING: servers reach the hub API at the hub app's *internal* address, never
# the public URL (that would leave the environment and come back through the
# public ingress). JupyterHub gives this one URL to users' servers (as
# JUPYTERHUB_API_URL) AND to the proxy as the target of /hub/, so it must reach
# the hub process itself: the hub app's main ingress is the proxy, and pointing
# there would make the proxy route /hub/ to itself. The hub app therefore exposes
# port 8081 inside the environment only (ingress.additionalPortMappings with
# external: false, exposedPort 8081), as infra/ deploys it.
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = f"http://{HUB_APP}:8081"

# Users' servers get internal ingress only; the hub routes /user/<name>/ to
# http://<app>.internal.<environment domain>, the URL the functions write to the
# status table. Nothing to configure here: the functions set ingress (transport
# http, allowInsecure, target port = c.AcaSpawner.port).

# --- the spawner --------------------------------------------------------------------------------

c.JupyterHub.spawner_class = "aca"

# Must equal the functions' ACA_HUB_ID: the table partition and part of every app name.
c.AcaSpawner.hub_id = "<hub id>"

# Queue and table, reached with the hub's managed identity (roles: Storage Queue
# Data Message Sender on the queue, Storage Table Data Reader on the table).
# No account key on the hub: the functions are the only writer of status.
c.AcaSpawner.queue_account_url = "https://<storage account>.queue.core.windows.net"
c.AcaSpawner.table_account_url = "https://<storage account>.table.core.windows.net"
c.AcaSpawner.storage_client_id = "<client id of the hub's user-assigned identity>"

# The key(s) shared with the functions (ACA_SEALING_KEYS); keep them in a Key
# Vault reference or an ACA secret, never in the image. First key seals.
c.AcaSpawner.sealing_keys = os.environ["ACA_SEALING_KEYS"]

# What users run. ACA pairs cpu and memory (0.5/1Gi, 1/2Gi, 2/4Gi on Consumption).
c.AcaSpawner.image = "quay.io/jupyter/scipy-notebook:latest"
c.AcaSpawner.cpu = 1.0
c.AcaSpawner.memory = "2Gi"

# Persistent homes: one Azure Files environment storage (SMB) for everybody; each
# user gets a folder of it. The mount options give the share to the jovyan user
# (uid 1000, gid 100) so chmod and git work, and nobrl keeps SQLite from locking up.
c.AcaSpawner.home_storage_name = "<environment storage name>"
c.AcaSpawner.home_mount_path = "/home/jovyan"

# Let users pick a size; they can only choose one of these slugs.
c.AcaSpawner.profile_list = [
    {"display_name": "Small (1 core, 2 GiB)", "slug": "small", "default": True},
    {
        "display_name": "Large (4 cores, 8 GiB)",
        "slug": "large",
        "description": "For heavier computations.",
        "overrides": {"cpu": 4, "memory": "8Gi"},
    },
]

# ACA needs minutes to pull an image and provision an app (JupyterHub's default is 60 s).
c.AcaSpawner.start_timeout = 600
c.AcaSpawner.http_timeout = 120

# --- the hub itself -----------------------------------------------------------------------------

# Not SQLite on Azure Files: network file systems break SQLite's locking, and a
# revision roll-out can briefly run two hubs. Use PostgreSQL flexible server.
c.JupyterHub.db_url = os.environ["JUPYTERHUB_DB_URL"]

# Named servers work: each becomes its own container app. Limit them: JupyterHub's
# default (0) is no limit, and one user could fill the environment's cores.
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 2
# Starts take minutes on ACA: JupyterHub's default of 100 starts at once is about
# one class starting together; a start beyond the limit is refused (HTTP 429).
c.JupyterHub.concurrent_spawn_limit = 150
# Servers ignore Jupyter config files in users' homes.
c.Spawner.disable_user_config = True

# --- the idle culler ---------------------------------------------------------------------------

# The culler runs in Azure Functions (a timer) and stops idle servers through the
# hub's REST API, so the hub stays the source of truth. It authenticates as this
# service ("aca-idle-culler"); its token is the functions' ACA_HUB_API_TOKEN (from
# Key Vault). Its role has exactly the scopes it needs: list:users,
# read:users:activity, read:servers, delete:servers; culler_role(cull_users=True)
# adds read:users and delete:users, for ACA_CULL_USERS=true.
c.JupyterHub.services = [culler_service(os.environ["ACA_CULLER_API_TOKEN"])]
c.JupyterHub.load_roles = [culler_role()]
