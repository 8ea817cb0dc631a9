"""JupyterHub spawner for Azure Container Apps with a serverless lifecycle.

The spawner (``acaspawner.spawner.AcaSpawner``, entry point ``aca``) needs
JupyterHub; the contract modules (``contract``, ``naming``, ``sealing``,
``wire``) and the storage layer do not, so the Azure Functions share them.

Hub side, around the spawner: ``traits`` (its configuration), ``spec`` (the
pure request builders), ``profiles`` (profile list, form, option checks),
``watcher`` (one shared reader of the status table per hub), ``lifecycle``
(what a status means for poll/start/stop), ``progress`` (the spawn page's
events) and ``errors`` (the ``SpawnException`` users see).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "AcaSpawner":  # imported lazily: it pulls in JupyterHub
        from .spawner import AcaSpawner

        return AcaSpawner
    raise AttributeError(name)
