"""JupyterHub configuration of the hub container app.

Every value comes from the environment (set by infra/modules/hub.bicep). When
a required variable is missing, loading fails with one message naming all of
them. The routing settings below are what make a browser reach users' servers
through Container Apps' ingress; see docs/deploy.md.
"""

import json
import os
import sys

from acaspawner.culler_service import culler_role, culler_service
from acaspawner.status_service import status_service
from acaspawner.storage_config import DEFAULT_QUEUE, DEFAULT_TABLE

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

DEFAULT_MOUNT_OPTIONS = "uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl"
AUTHENTICATORS = {
    "github": "oauthenticator.github.GitHubOAuthenticator",
    "azuread": "oauthenticator.azuread.AzureAdOAuthenticator",
}

_missing: list[str] = []


def _env(name: str, default: str = "") -> str:
    """An optional setting."""
    return os.environ.get(name, "").strip() or default


def _required(name: str) -> str:
    """A setting without which the hub must not start (collected, reported together)."""
    value = os.environ.get(name, "").strip()
    if not value:
        _missing.append(name)
    return value


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RuntimeError(f"jupyterhub_config.py: {name} must be true or false, not {value!r}")


def _number(name: str, default: str, kind=float):
    value = os.environ.get(name, "").strip() or default
    try:
        return kind(value)
    except ValueError:
        raise RuntimeError(f"jupyterhub_config.py: {name} must be a number, not {value!r}") from None


def _count(name: str, default: int) -> int:
    """A whole number of at least 0 (0: JupyterHub's "no limit")."""
    value = os.environ.get(name, "").strip() or str(default)
    if not (value.isascii() and value.isdigit()):
        raise RuntimeError(f"jupyterhub_config.py: {name} must be a whole number, 0 or more, not {value!r}")
    return int(value)


def _names(name: str) -> set[str]:
    """A comma separated list of user names."""
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def _warn(message: str) -> None:
    print(f"[jupyterhub_config] WARNING: {message}", file=sys.stderr)


# --- routing (see DESIGN "Routing rules") --------------------------------------

public_url = _required("JUPYTERHUB_PUBLIC_URL")
if public_url and not public_url.endswith("/"):
    public_url += "/"
c.JupyterHub.public_url = public_url
# the proxy listens on 8000 (the app's external ingress) ...
c.JupyterHub.bind_url = "http://0.0.0.0:8000"
# ... and JupyterHub on 8081, which users' servers and the proxy reach inside
# the environment at the hub app's internal address, e.g. http://jupyterhub:8081
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = _required("JUPYTERHUB_HUB_CONNECT_URL")
# Container Apps' ingress routes by Host: the proxy must send the target's host
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy", "--change-origin"]

# --- state ---------------------------------------------------------------------------

c.JupyterHub.db_url = _required("JUPYTERHUB_DB_URL")
# Azure: the URL names the hub's managed identity and holds no password; the
# identity signs in with a Microsoft Entra token (password logins are disabled)
db_entra_auth = _flag("JUPYTERHUB_DB_ENTRA_AUTH")
# a new hub image may bring a schema migration; there is no one-off shell to run
# `jupyterhub upgrade-db` in, and PostgreSQL keeps point-in-time backups
c.JupyterHub.upgrade_db = True
c.JupyterHub.cookie_secret = _required("JUPYTERHUB_COOKIE_SECRET")  # hex
# JupyterHub reads JUPYTERHUB_CRYPT_KEY itself; auth state needs it
_required("JUPYTERHUB_CRYPT_KEY")
c.Authenticator.enable_auth_state = True
# users' servers outlive hub restarts and revision roll-outs
c.JupyterHub.cleanup_servers = False
c.JupyterHub.allow_named_servers = _flag("ACA_ALLOW_NAMED_SERVERS")

# --- limits ------------------------------------------------------------------------------
# JupyterHub's defaults leave named servers unlimited (0): one user could start
# enough of them to fill every environment's core budget, and every other start
# would then end NoCapacity. It counts a user's named servers, running or stopped,
# besides the default server.
c.JupyterHub.named_server_limit_per_user = _count("ACA_NAMED_SERVER_LIMIT_PER_USER", 2)
# Servers running at once on the whole hub (0: no limit; the functions' core
# budget per environment still refuses starts beyond it with NoCapacity).
c.JupyterHub.active_server_limit = _count("ACA_ACTIVE_SERVER_LIMIT", 0)
# Starts in progress at once. JupyterHub's default, 100, is one class: on
# Container Apps a start takes minutes, not seconds, so a whole class pressing
# "Start" at the beginning of a lesson would see the 101st and later refused
# with "too many users trying to log in right now" (HTTP 429). 150 leaves room
# for a class and retries; a start beyond it is refused, not queued.
c.JupyterHub.concurrent_spawn_limit = _count("ACA_CONCURRENT_SPAWN_LIMIT", 150)

# --- the spawner -----------------------------------------------------------------------

c.JupyterHub.spawner_class = "aca"
c.AcaSpawner.hub_id = _required("ACA_HUB_ID")
c.AcaSpawner.sealing_keys = _required("ACA_SEALING_KEYS")
c.AcaSpawner.queue_name = _env("ACA_LIFECYCLE_QUEUE", DEFAULT_QUEUE)
c.AcaSpawner.table_name = _env("ACA_STATUS_TABLE", DEFAULT_TABLE)
connection_string = _env("ACA_STORAGE_CONNECTION_STRING")  # local development only (Azurite)
if connection_string:
    c.AcaSpawner.storage_connection_string = connection_string
else:
    c.AcaSpawner.queue_account_url = _required("ACA_QUEUE_ACCOUNT_URL")
    c.AcaSpawner.table_account_url = _required("ACA_TABLE_ACCOUNT_URL")
    # the hub's user-assigned identity (azure-identity reads AZURE_CLIENT_ID too)
    c.AcaSpawner.storage_client_id = _env("AZURE_CLIENT_ID")

c.AcaSpawner.image = _required("ACA_SINGLEUSER_IMAGE")
c.AcaSpawner.cpu = _number("ACA_SINGLEUSER_CPU", "0.5")
c.AcaSpawner.memory = _env("ACA_SINGLEUSER_MEMORY", "1Gi")
c.AcaSpawner.workload_profile = _env("ACA_WORKLOAD_PROFILE", "Consumption")
c.AcaSpawner.home_storage_name = _env("ACA_HOME_STORAGE_NAME")  # empty: no persistent home
c.AcaSpawner.home_mount_path = _env("ACA_HOME_MOUNT_PATH", "/home/jovyan")
c.AcaSpawner.home_mount_options = _env("ACA_HOME_MOUNT_OPTIONS", DEFAULT_MOUNT_OPTIONS)
# creating a container app takes minutes, not JupyterHub's default 60 s
c.AcaSpawner.start_timeout = _number("ACA_START_TIMEOUT", "900", int)
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
# single-user servers ignore Jupyter config files in the user's home ($HOME/.jupyter and
# the like): a file there cannot loosen the server's settings (docs/security.md)
c.Spawner.disable_user_config = True
try:
    c.AcaSpawner.profile_list = json.loads(_env("ACA_PROFILE_LIST", "[]"))
except json.JSONDecodeError as e:
    raise RuntimeError(f"jupyterhub_config.py: ACA_PROFILE_LIST is not valid JSON: {e}") from None

# --- the idle culler (a timer function calling the hub API with this token) ------------

services = []
culler_token = _env("ACA_CULLER_API_TOKEN")
if culler_token:
    # the service's role: what jupyterhub-idle-culler needs, nothing more (deleting idle users adds two scopes)
    services.append(culler_service(culler_token))
    c.JupyterHub.load_roles = [culler_role(cull_users=_flag("ACA_CULL_USERS"))]
else:
    _warn("ACA_CULLER_API_TOKEN is not set: idle servers are not culled")

# --- the admins' status page (/services/aca-status/, admins only: docs/observability.md) -------

if _flag("ACA_STATUS_PAGE", True) and not _missing:
    services.append(status_service(os.environ))
c.JupyterHub.services = services

# --- login ---------------------------------------------------------------------------------

authenticator = _env("ACA_AUTHENTICATOR", "github").lower()
if authenticator not in AUTHENTICATORS:
    raise RuntimeError(
        f"jupyterhub_config.py: ACA_AUTHENTICATOR must be one of {', '.join(AUTHENTICATORS)}, not {authenticator!r}"
    )
client_id = _env("OAUTH_CLIENT_ID")
if client_id:
    c.JupyterHub.authenticator_class = AUTHENTICATORS[authenticator]
    c.OAuthenticator.client_id = client_id
    c.OAuthenticator.client_secret = _required("OAUTH_CLIENT_SECRET")
    c.OAuthenticator.oauth_callback_url = _env("OAUTH_CALLBACK_URL", f"{public_url}hub/oauth_callback")
    if authenticator == "azuread":
        c.AzureAdOAuthenticator.tenant_id = _required("AAD_TENANT_ID")
        c.AzureAdOAuthenticator.username_claim = _env("AAD_USERNAME_CLAIM", "upn")
else:
    # The OAuth app can only be registered once the hub's URL exists: until
    # then the hub runs, and nobody can log in.
    c.JupyterHub.authenticator_class = "jupyterhub.auth.NullAuthenticator"
    _warn("OAUTH_CLIENT_ID is not set: nobody can log in (see docs/deploy.md, 'Log in')")
c.Authenticator.admin_users = _names("ACA_ADMIN_USERS")
c.Authenticator.allowed_users = _names("ACA_ALLOWED_USERS")

if _missing:
    raise RuntimeError("jupyterhub_config.py: missing required environment variable(s): " + ", ".join(_missing))

if db_entra_auth:
    from acaspawner.pgentra import sign_in_with_entra

    sign_in_with_entra(client_id=_env("AZURE_CLIENT_ID"))
