"""The serverless half: lifecycle (queue → ARM → table), culler and reconciler (timers).

Modules, one job each:

- ``settings``: app settings (docs/settings.md) and host.json limits, validated lazily
- ``policy``: what a request may ask for (images, cpu, memory, volumes, its hub and key)
- ``spec``: the pure builder of a user's container app (ARM body)
- ``arm``: the ARM client, its retry policy, and the gateway the handlers use
- ``homes``: users' home folders on the Azure Files share
- ``storage``: status table (ETag-conditional) and the poison queue
- ``lifecycle``: the queue handler's logic (``handle_message``)
- ``runtime``: dependencies built once per configuration for the registered functions
"""
