"""The serverless half: lifecycle (queue → ARM, follow-ups → table), culler and reconciler (timers).

Modules, one job each:

Settings and rules

- ``appsettings``: the parsers of one app setting (text, numbers, flags, memory, TimeSpans), naming it in errors
- ``settings``: app settings (docs/settings.md), one reader per group, and host.json limits, validated lazily
- ``policy``: what a request may ask for (images, cpu, memory, volumes, its hub and key)
- ``rules``: the ordering rules (generation, phase, ETag races) as pure decisions

ARM bodies and placement

- ``app_body``: the pure builder of the container app a start request asks for (its ARM body)
- ``environments``: the pool of environments servers are placed in, with their budgets (``ACA_ENVIRONMENTS``)
- ``footprint``: the cores and memory a server occupies, and an app's environment
- ``placement``: which environment has room (pure), and the message when none has
- ``capacity``: what each environment holds, kept in the status table (ETag-conditional transactions)
- ``capacity_rows``: the ledger's rows: their keys, what each holds, how each is read
- ``count_shards``: an environment's count over several rows, and which of them a commit writes

Outside systems

- ``arm``: the one ARM gateway (retry policy, throttling, error classification; writes sent, never awaited)
- ``storage``: status table (ETag-conditional), follow-ups onto the lifecycle queue, the poison queue
- ``homes``: users' home folders on the Azure Files share
- ``user_homes``: which folder is a user's home, and its owner record
- ``hubapi``: a small synchronous client of the JupyterHub REST API (culler, reconciler)

The lifecycle (queue trigger)

- ``lifecycle``: the queue handler (``handle_message``): opens, checks and dispatches requests and follow-ups
- ``deps``: what the handler works with, built once per settings
- ``server_run``: one delivery acting on one server, step by step (claim, write, follow up, record)
- ``follow_run``: one delivery of one follow-up (look once, then record, write next, or come back)
- ``followup``: the sealed follow-up messages that come back to an ARM operation later
- ``listing``: one listing of the resource group's apps, shared by every follow-up of an instance
- ``pending_looks``: the follow-ups an instance sent that still wait, so one look records many outcomes

Timers

- ``culler``: stops idle servers through the hub's REST API
- ``reconciler``: brings ARM and the status table back in line, as a sequence of steps:
  ``reconcile_run`` (options, summary), ``reconcile_apps``, ``reconcile_stuck``, ``capacity_repair``,
  ``poison_drain``

The warm pool

- ``pool_profiles``: what the pool keeps ready (``ACA_WARM_POOL``), how many, and when
- ``warm_pool``: the slots' rows and the container app a slot is
- ``pool_timer``: keeps each profile's slots at its size, at ARM's pace
- ``slot_binding``: binding a start to a warm server, and letting go of it when the server stops
- ``slot_launcher`` and ``slot_claims``: the program a slot runs (shipped into it as two files, run by the
  image's Python; never imported by the functions)

- ``runtime``: dependencies built once per configuration for the registered functions
"""
