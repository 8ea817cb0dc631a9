"""Fixtures for the functions' tests (helpers live in fn_support.py)."""

from __future__ import annotations

import pytest
from fn_support import base_env

from acaspawner.sealing import Sealer
from functions.settings import Settings


@pytest.fixture
def env() -> dict[str, str]:
    return base_env()


@pytest.fixture
def settings(env) -> Settings:
    return Settings.from_environ(env)


@pytest.fixture
def sealer(settings) -> Sealer:
    return Sealer(settings.sealing_keys, max_age=settings.seal_max_age)
