"""What the Azure SDK clients' HTTP transports take from the environment, resolved once per client.

azure-core's transports read proxy settings from the environment on every
request (``use_env_settings``, on by default): requests scans ``os.environ``
for ``*_proxy`` variables, looks for a netrc file and for
``REQUESTS_CA_BUNDLE``, once per call, about a fifth of the CPU a table call
costs the functions; aiohttp reads the proxies per request too. The
environment does not change while a process runs, so where it names no proxy
a client is built with that reading switched off, and a CA bundle the
environment names is handed to it as ``connection_verify``, as requests would
have used it. Where a proxy is set the transport keeps reading the
environment per request, which is how ``NO_PROXY`` applies host by host.

A netrc file is never read then: the clients send their own credentials, and
requests would replace their ``Authorization`` header with the netrc login.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

#: what requests uses instead of its own CA bundle when a request is verified with the default (True)
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def transport_options(connection_verify: bool | str = True, *, aio: bool = False) -> dict[str, Any]:
    """Keyword arguments for an Azure SDK client (sync, or ``aio``) that verifies TLS with ``connection_verify``:
    ``use_env_settings=False`` and the environment's CA bundle when the environment names no proxy, else
    ``connection_verify`` alone (the transport then reads the environment per request)."""
    options: dict[str, Any] = {} if connection_verify is True else {"connection_verify": connection_verify}
    if urllib.request.getproxies_environment():
        return options
    options["use_env_settings"] = False
    if connection_verify is True and not aio:  # aiohttp never took a CA bundle from these variables
        bundle = next((os.environ[name] for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
        if bundle:
            options["connection_verify"] = bundle
    return options
