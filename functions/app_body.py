"""The container app a start request asks for, as an ARM ``Microsoft.App/containerApps`` body.

Pure: a request and the settings in, a JSON-ready dict out, so the routing
rules (internal ingress, plain http, ``allowInsecure``, one replica) and the
secret handling (the API token only ever as an ACA secret, referenced with
``secretRef``) are checked by unit tests without Azure.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

from acaspawner.contract import Request

from .environments import budget_of
from .followup import FollowUp
from .settings import Settings

CONTAINER_NAME = "notebook"
HOME_VOLUME = "home"
MAX_TAG_VALUE = 256
MAX_SECRET_NAME = 60

TAG_HUB = "aca-hub"
TAG_USER = "aca-user"
TAG_SERVER = "aca-server"
TAG_GENERATION = "aca-generation"

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tag_value(text: str) -> str:
    """``text`` as an ARM tag value: no control characters, at most 256 characters."""
    return _CONTROL.sub("", text)[:MAX_TAG_VALUE]


def _slug(name: str) -> str:
    return _NOT_SLUG.sub("-", name.lower()).strip("-")


def secret_names(env_names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """ACA secret names (lower case, digits, ``-``) for environment variable names, unique per app.

    ``JUPYTERHUB_API_TOKEN`` → ``jupyterhub-api-token``; names that would
    collide (``A_B`` and ``A-B``) or have nothing readable get a hash suffix.
    """
    def base(name: str) -> str:
        slug = _slug(name)[: MAX_SECRET_NAME - 11].strip("-")
        return slug if slug[:1].isalpha() else f"s-{slug}".rstrip("-")

    bases = {name: base(name) for name in env_names}
    counts = Counter(bases.values())
    result = {}
    for name, slug in bases.items():
        if counts[slug] > 1 or slug == "s":
            slug = f"{slug}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        result[name] = slug
    return result


def _env(request: Request) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(container env, app secrets): secrets by reference only, never as plain values."""
    spec = request.spec
    assert spec is not None
    # an empty secret is no secret (and ACA refuses empty secret values)
    secret_env = {k: v for k, v in spec.secret_env.items() if v}
    names = secret_names(sorted(secret_env))
    env = [{"name": k, "value": v} for k, v in spec.env.items() if k not in secret_env]
    env += [{"name": k, "value": ""} for k, v in spec.secret_env.items() if not v and k not in spec.env]
    env += [{"name": k, "secretRef": names[k]} for k in sorted(secret_env)]
    secrets = [{"name": names[k], "value": secret_env[k]} for k in sorted(secret_env)]
    return env, secrets


def owner_tags(request: Request | FollowUp) -> dict[str, str]:
    """The tags that say whose server an app is (hub, user, server name)."""
    return {
        TAG_HUB: tag_value(request.hub_id),
        TAG_USER: tag_value(request.user),
        TAG_SERVER: tag_value(request.server_name),
    }


def app_tags(request: Request) -> dict[str, str]:
    return {**owner_tags(request), TAG_GENERATION: str(request.generation)}


def _hub_api_moved(env: list[dict[str, str]], hub_api_url: str) -> list[dict[str, str]]:
    """``env`` with the hub API (and the activity URL below it) at ``hub_api_url`` instead."""
    sent = next((e.get("value", "") for e in env if e["name"] == "JUPYTERHUB_API_URL"), "").rstrip("/")
    if not sent:
        return env
    moved = []
    for entry in env:
        value = entry.get("value")
        if entry["name"].startswith("JUPYTERHUB_") and isinstance(value, str) and value.startswith(sent):
            entry = {**entry, "value": hub_api_url + value[len(sent):]}
        moved.append(entry)
    return moved


def build_container_app(request: Request, settings: Settings, environment_id: str = "",
                        home_folder: str = "") -> dict[str, Any]:
    """The ARM body that creates or updates the user's container app for a start ``request``.

    ``environment_id``: where it was placed (:mod:`functions.placement`); default ``ACA_ENVIRONMENT_ID``.
    An environment of the pool with ``vnet_ingress`` or ``hub_api_url`` (:mod:`functions.environments`)
    changes the app's ingress scope or the hub API address its server calls. ``home_folder``: the
    user's folder of the home share (:mod:`functions.user_homes`), mounted when the request asks for a
    home, at the functions' own mount path with their own mount options (never the request's).
    """
    spec = request.spec
    if spec is None:
        raise ValueError("only a start request describes a container app")
    environment_id = environment_id or settings.environment_id
    budget = budget_of(settings.environments, environment_id)
    env, secrets = _env(request)
    if budget is not None and budget.hub_api_url:
        env = _hub_api_moved(env, budget.hub_api_url)

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "env": env,
        "resources": {"cpu": spec.cpu, "memory": spec.memory},
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    volumes = []
    if spec.volumes:
        if not home_folder:
            raise ValueError("a start that mounts a home needs the user's home folder")
        container["volumeMounts"] = [{"volumeName": HOME_VOLUME, "mountPath": settings.home_mount_path,
                                      "subPath": home_folder}]
        volume = {"name": HOME_VOLUME, "storageType": "AzureFile", "storageName": settings.home_storage_name}
        if settings.home_mount_options:
            volume["mountOptions"] = settings.home_mount_options
        volumes.append(volume)

    configuration: dict[str, Any] = {
        "activeRevisionsMode": "Single",
        # the routing rules: reached only through the hub's proxy, over plain http/1.1
        # (websockets break on auto/http2; https redirects turn POSTs into GETs)
        "ingress": {
            # internal ingress (the environment only); on an internal environment of the pool, the
            # virtual network's (external there never means the internet)
            "external": bool(budget is not None and budget.vnet_ingress),
            "targetPort": spec.target_port,
            "transport": "http",
            "allowInsecure": True,
        },
        "secrets": secrets,
    }
    if budget is not None and budget.vnet_ingress:
        # the virtual network's ingress: only the hub's proxy may connect
        configuration["ingress"]["ipSecurityRestrictions"] = [
            {"name": f"hub-{i + 1}", "description": "the hub's proxy", "ipAddressRange": cidr, "action": "Allow"}
            for i, cidr in enumerate(budget.allow_from)
        ]
    body: dict[str, Any] = {
        "location": settings.location,
        "tags": app_tags(request),
        "properties": {
            "environmentId": environment_id,
            "configuration": configuration,
            "template": {
                "containers": [container],
                "scale": {"minReplicas": 1, "maxReplicas": 1},
                "volumes": volumes,
            },
        },
    }
    profile = spec.workload_profile or settings.workload_profile
    if profile:
        body["properties"]["workloadProfileName"] = profile
    if settings.registry_server:
        configuration["registries"] = [{"server": settings.registry_server, "identity": settings.registry_identity}]
        # ACA pulls with an identity only if it is assigned to the app; lifecycle "None"
        # keeps it for the platform's image pull, so the user's code cannot get a token
        body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {settings.registry_identity: {}}}
        configuration["identitySettings"] = [{"identity": settings.registry_identity, "lifecycle": "None"}]
    return body
