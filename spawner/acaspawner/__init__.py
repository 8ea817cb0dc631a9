"""JupyterHub spawner for Azure Container Apps with a serverless lifecycle.

The spawner (``acaspawner.spawner.AcaSpawner``, entry point ``aca``) needs
JupyterHub; the contract modules (``contract``, ``naming``, ``sealing``,
``wire``) and the storage layer do not, so the Azure Functions share them.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "AcaSpawner":  # imported lazily: it pulls in JupyterHub
        from .spawner import AcaSpawner

        return AcaSpawner
    raise AttributeError(name)
