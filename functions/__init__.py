"""The serverless half: lifecycle (queue → ARM, follow-ups → table), culler and reconciler (timers).

Modules, one job each:

- ``appsettings``: the parsers of one app setting (text, numbers, flags, memory, TimeSpans), naming it in errors
- ``settings``: app settings (docs/settings.md), one reader per group, and host.json limits, validated lazily
- ``policy``: what a request may ask for (images, cpu, memory, volumes, its hub and key)
- ``spec``: the pure builder of a user's container app (ARM body)
- ``environments``: the pool of environments servers are placed in, with their budgets (``ACA_ENVIRONMENTS``)
- ``footprint``: the cores and memory a server occupies, and an app's environment
- ``placement``: which environment has room (pure), and the message when none has
- ``capacity``: what each environment holds, kept in the status table (ETag-conditional transactions)
- ``capacity_repair``: the reconciler's step that repairs and reports the capacity ledger
- ``arm``: the ARM client, its retry policy, and the gateway the handlers use (writes sent, never awaited)
- ``followup``: the sealed follow-up messages that come back to an ARM operation later
- ``listing``: one listing of the resource group's apps, shared by every follow-up of an instance
- ``homes``: users' home folders on the Azure Files share
- ``storage``: status table (ETag-conditional), follow-ups onto the lifecycle queue, the poison queue
- ``lifecycle``: the queue handler (``handle_message``): opens, checks and dispatches requests and follow-ups
- ``rules``: the ordering rules (generation, phase, ETag races) as pure decisions
- ``server_run``: one delivery acting on one server, step by step (claim, write, follow up, record)
- ``runtime``: dependencies built once per configuration for the registered functions
"""
