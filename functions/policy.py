"""What a request may ask for, checked before any ARM call.

The hub is trusted to seal requests, but the functions hold the ARM rights,
so they enforce the operator's limits themselves: allowed images, maximum
cpu and memory, the one home storage and only the user's own folder of it,
and that a server key really belongs to the (hub, user, server) triple it
arrives with.
"""

from __future__ import annotations

import fnmatch
import re

from acaspawner.contract import Op, Request, ServerSpec
from acaspawner.naming import home_folder, legacy_home_folder, legacy_server_key, server_key

from .followup import FollowUp
from .settings import Settings, parse_memory_gi

_VOLUME_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[^\s\x00-\x1f\x7f]+$")


class PolicyViolation(ValueError):
    """A request this deployment refuses to run; the message is shown to the user."""


class ForeignHub(PolicyViolation):
    """A request sealed for a different hub: not ours to act on, nor to write status for."""


class ForeignKey(ForeignHub):
    """A server key that is not its user's and server's: the row and app it names belong to another server."""


def image_allowed(image: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when ``image`` matches one of the glob ``patterns`` (``*`` also matches ``/`` and ``:``)."""
    return bool(_IMAGE.match(image)) and any(fnmatch.fnmatchcase(image, p) for p in patterns)


def key_belongs_to(request: Request | FollowUp) -> bool:
    """True when ``request.server_key`` is the key naming derives from its hub, user and server name.

    A key of the older, 32-bit form is accepted too: servers recorded under it keep it.
    """
    prefix = request.server_key.split("-", 1)[0]
    triple = (request.hub_id, request.user, request.server_name)
    try:
        return request.server_key in (server_key(*triple, prefix=prefix), legacy_server_key(*triple, prefix=prefix))
    except ValueError:  # not a prefix naming would accept
        return False


def check_volumes(spec: ServerSpec, settings: Settings, user: str) -> None:
    """A server's only volume is its user's home; its folder, if named, is the user's own.

    The request's volume says that the server wants a home. Which folder, where
    and how it is mounted are the functions' (:mod:`functions.user_homes`, the
    ``ACA_HOME_*`` settings); a folder name other than the user's own (or
    none) is refused, so a request naming another user's folder, a path or
    the share's root never gets as far as ARM.
    """
    if not spec.volumes:
        return
    if not settings.home_storage_name:
        raise PolicyViolation("volumes are not allowed: this deployment has no home storage")
    if len(spec.volumes) > 1:
        raise PolicyViolation("a server mounts one volume at most: its user's home")
    (volume,) = spec.volumes
    if volume.storage_name != settings.home_storage_name or volume.storage_type != "AzureFile":
        raise PolicyViolation(
            f"volume {volume.name!r} must use the home storage {settings.home_storage_name!r} (AzureFile), "
            f"not {volume.storage_name!r} ({volume.storage_type})"
        )
    if not _VOLUME_NAME.match(volume.name):
        raise PolicyViolation(f"invalid volume name {volume.name!r}")
    if volume.sub_path not in ("", home_folder(user), legacy_home_folder(user)):
        raise PolicyViolation(f"volume subPath {volume.sub_path!r} is not the home folder of user {user!r}")


def check_spec(spec: ServerSpec, settings: Settings) -> None:
    if not image_allowed(spec.image, settings.allowed_images):
        raise PolicyViolation(f"image {spec.image!r} is not allowed here (allowed: {', '.join(settings.allowed_images)})")
    if spec.cpu > settings.max_cpu:
        raise PolicyViolation(f"cpu {spec.cpu} exceeds the maximum of {settings.max_cpu:g} cores")
    try:
        memory = parse_memory_gi(spec.memory)
    except ValueError as e:
        raise PolicyViolation(str(e)) from None
    if memory > settings.max_memory_gi:
        raise PolicyViolation(f"memory {spec.memory} exceeds the maximum of {settings.max_memory_gi:g}Gi")
    profile = spec.workload_profile or settings.workload_profile
    if profile and profile.lower() not in {p.lower() for p in settings.allowed_workload_profiles}:
        raise PolicyViolation(f"workload profile {profile!r} is not allowed here "
                              f"(allowed: {', '.join(settings.allowed_workload_profiles)})")



def check_request(request: Request, settings: Settings) -> None:
    """Raise :class:`ForeignHub` or :class:`PolicyViolation` unless this deployment may act on ``request``."""
    if request.hub_id != settings.hub_id:
        raise ForeignHub(f"request is for hub {request.hub_id!r}, these functions serve {settings.hub_id!r}")
    if not key_belongs_to(request):
        raise ForeignKey(f"server key {request.server_key} does not match its user and server name")
    if request.op is Op.START:
        assert request.spec is not None  # the contract guarantees it
        check_spec(request.spec, settings)
    if request.spec is not None:  # a start's home, or the home a delete removes
        check_volumes(request.spec, settings, request.user)
