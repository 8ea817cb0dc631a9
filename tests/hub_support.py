"""JupyterHub's side of the spawner tests: its ``Hub`` object and spawners built as JupyterHub builds them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User

from acaspawner.spawner import AcaSpawner

PUBLIC_URL = "https://hub.example.org/"
HUB_CONNECT_URL = "http://hub-app/hub/"
API_TOKEN = "secret-token-0123456789abcdef"


def make_hub() -> Hub:
    """The hub as JupyterHub configures it with public_url and hub_connect_url set."""
    hub = Hub(base_url="/hub/", bind_url="http://127.0.0.1:8081/hub/", public_host="https://hub.example.org")
    hub.connect_url = HUB_CONNECT_URL
    return hub


def make_spawner(db, user_name: str = "user", server_name: str = "", **kwargs: Any) -> AcaSpawner:
    """An AcaSpawner built through ``User._new_spawner`` (it loads the state saved in ``db``), as JupyterHub does.

    ``hub`` replaces :func:`make_hub`'s; every other keyword is a trait of the spawner.
    """
    orm_user = db.query(orm.User).filter_by(name=user_name).one_or_none()
    if orm_user is None:
        orm_user = orm.User(name=user_name)
        db.add(orm_user)
        db.commit()
    hub = kwargs.pop("hub", None) or make_hub()
    settings = {"public_url": urlparse(PUBLIC_URL), "hub": hub, "allow_named_servers": True}
    user = User(orm_user, settings)
    if server_name and server_name not in user.orm_spawners:
        user._new_orm_spawner(server_name, server_name)
    kwargs.setdefault("api_token", API_TOKEN)
    kwargs.setdefault("oauth_client_id", f"jupyterhub-user-{user_name}")
    return user._new_spawner(server_name, spawner_class=AcaSpawner, **kwargs)
