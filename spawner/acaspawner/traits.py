"""The configuration of :class:`acaspawner.spawner.AcaSpawner` (``c.AcaSpawner.*``).

Kept apart from the spawner's behaviour so each file stays readable; the
mixin is a ``Configurable``, so ``c.AcaSpawner.<name>`` reaches every trait.
"""

from __future__ import annotations

from jupyterhub.traitlets import ByteSpecification
from traitlets import Callable, Dict, Float, Integer, List, TraitError, Unicode, Union, validate
from traitlets.config import Configurable

from . import profile_config
from .contract import HOME_MOUNT_OPTIONS, HOME_MOUNT_PATH
from .sealing import DEFAULT_MAX_AGE
from .spec import validate_cpu, validate_memory
from .storage_config import DEFAULT_QUEUE, DEFAULT_TABLE

DEFAULT_IMAGE = "quay.io/jupyter/base-notebook:latest"
DEFAULT_MOUNT_OPTIONS = HOME_MOUNT_OPTIONS


class AcaSpawnerConfig(Configurable):
    """Traits of the ACA spawner: where requests go, what servers run, how long to wait."""

    # --- identity and storage -----------------------------------------------------------------

    hub_id = Unicode(
        "jupyterhub",
        help="""Identifier of this hub in the lifecycle requests and the status table.

        It is the table's PartitionKey and part of every container app name, and it
        must equal the functions' ACA_HUB_ID setting: the functions refuse
        requests of other hubs. Change it only together with the functions, and
        never while servers run (their apps would be orphaned).
        """,
    ).tag(config=True)

    queue_name = Unicode(DEFAULT_QUEUE, help="Storage queue the spawner sends lifecycle requests to.").tag(config=True)
    table_name = Unicode(DEFAULT_TABLE, help="Storage table the functions write server statuses to.").tag(config=True)

    storage_connection_string = Unicode(
        "",
        help="""Connection string of the storage account holding the queue and the table.

        Meant for Azurite and development. In Azure leave it empty and set
        queue_account_url and table_account_url, so the hub authenticates with
        its managed identity (Storage Queue Data Message Sender, Storage Table
        Data Reader) and no account key is needed.
        """,
    ).tag(config=True)

    queue_account_url = Unicode(
        "", help="Queue endpoint for identity-based access, e.g. https://<account>.queue.core.windows.net"
    ).tag(config=True)
    table_account_url = Unicode(
        "", help="Table endpoint for identity-based access, e.g. https://<account>.table.core.windows.net"
    ).tag(config=True)
    storage_client_id = Unicode(
        "", help="Client id of the hub's user-assigned managed identity (empty: DefaultAzureCredential's choice)."
    ).tag(config=True)

    sealing_keys = Unicode(
        "",
        help="""Keys that seal lifecycle requests, comma separated; the first one seals.

        The same keys must be configured in the functions (ACA_SEALING_KEYS).
        Rotate by putting a new key first on both sides, then removing the old
        one once no request sealed with it can still be queued (seal_max_age).
        Make a key with: aca-sealing-key
        """,
    ).tag(config=True)

    seal_max_age = Float(
        DEFAULT_MAX_AGE,
        help="""Seconds a sealed request stays valid; the functions drop older ones.

        Also bounds how long a sent request counts as "still queued": a server
        whose request is older and never showed up in the table is reported dead.
        """,
    ).tag(config=True)

    # --- what the server runs -----------------------------------------------------------------

    image = Unicode(DEFAULT_IMAGE, help="Container image of the single-user server.").tag(config=True)
    cpu = Float(
        1.0,
        help="""CPU cores of each server (ACA pairs cores with memory, e.g. 0.5/1Gi, 1/2Gi).

        Sent as written together with memory. JupyterHub's cpu_limit,
        mem_limit, cpu_guarantee and mem_guarantee (KubeSpawner's settings),
        when any of them is set (here, in c.Spawner or by the chosen profile),
        win: they are mapped onto a size Container Apps offers (see
        acaspawner.sizes), and cpu/memory then only fill in a resource they
        leave open on a dedicated workload profile.
        """,
    ).tag(config=True)
    memory = Unicode(
        "2Gi",
        help="""Memory of each server, e.g. '2Gi' (must fit cpu on the workload profile).

        Like cpu, used as written unless cpu_limit, mem_limit, cpu_guarantee
        or mem_guarantee is set; those win.
        """,
    ).tag(config=True)
    # JupyterHub's own size settings (what KubeSpawner configs set), redefined to say what they mean here
    cpu_limit = Float(
        None,
        allow_none=True,
        help="""Cores a server gets (JupyterHub's and KubeSpawner's setting; a profile may set it too).

        A container app has one cpu value, reserved and enforced, so the limit
        is met exactly. On the Consumption workload profile it must be 0.25 to
        4 in steps of 0.25 and comes with twice as many GiB of memory, unless
        mem_limit/mem_guarantee ask for another pair, which must then exist
        (the error names the nearest sizes). Wins over cpu. CPU_LIMIT and
        CPU_GUARANTEE inside the server are the cores the app gets.
        """,
    ).tag(config=True)
    cpu_guarantee = Float(
        None,
        allow_none=True,
        help="""Cores a server gets at least (JupyterHub's and KubeSpawner's setting).

        Used when cpu_limit is not set: the server gets the smallest size that
        meets it (on Consumption the next of ACA's sizes, elsewhere rounded up
        to two decimals). Must not be above cpu_limit. Wins over cpu.
        """,
    ).tag(config=True)
    mem_limit = ByteSpecification(
        None,
        help="""Memory a server gets, in bytes or as '2G', '512M' (powers of 1024, as in JupyterHub).

        Met exactly, like cpu_limit: on the Consumption workload profile 0.5 to
        8 GiB in steps of 0.5, with half as many cores unless cpu_limit or
        cpu_guarantee ask for another pair. Wins over memory. MEM_LIMIT and
        MEM_GUARANTEE inside the server are the app's memory in bytes.
        """,
    ).tag(config=True)
    mem_guarantee = ByteSpecification(
        None,
        help="""Memory a server gets at least, in bytes or as '1G' (zero-to-jupyterhub sets 1G by default).

        Used when mem_limit is not set: the server gets the smallest size that
        meets it. Must not be above mem_limit. Wins over memory.
        """,
    ).tag(config=True)

    workload_profile = Unicode(
        "",
        help="""Workload profile name of the ACA environment to run servers on (empty: Consumption).

        It decides how cpu_limit/mem_limit are mapped: on Consumption (empty
        or "Consumption") onto ACA's pairs, 0.25 to 4 cores in steps of 0.25
        with twice as many GiB; on any other (dedicated) profile any values
        with at most two decimals, up to the profile's node size.
        """,
    ).tag(config=True)

    port = Integer(8888, help="Port the single-user server listens on inside its container (the ingress target port).").tag(
        config=True
    )
    ip = Unicode("0.0.0.0", help="Address the single-user server binds to inside its container.").tag(config=True)

    home_storage_name = Unicode(
        "",
        help="""Name of the ACA environment storage (one Azure Files share for all users) for persistent homes.

        Set, every server of a user mounts that user's one home folder (named
        servers share it, as in zero-to-jupyterhub). The functions choose the
        folder by their own rule, record its owner and mount it at their
        ``ACA_HOME_MOUNT_PATH`` with their ``ACA_HOME_MOUNT_OPTIONS``; the same
        storage name must be their ``ACA_HOME_STORAGE_NAME``. Empty: servers
        get no persistent home.
        """,
    ).tag(config=True)
    home_mount_path = Unicode(
        HOME_MOUNT_PATH,
        help="""Where the home is mounted, as sent to functions of an earlier release.

        The functions' ``ACA_HOME_MOUNT_PATH`` decides; keep the two equal while
        both releases run.
        """,
    ).tag(config=True)
    home_mount_options = Unicode(
        DEFAULT_MOUNT_OPTIONS,
        help="""SMB mount options of the home share, as sent to functions of an earlier release.

        The functions' ``ACA_HOME_MOUNT_OPTIONS`` decides (same default: fit for
        the Jupyter images' jovyan user, uid 1000, gid 100).
        """,
    ).tag(config=True)

    allow_origin = Unicode(
        "",
        help="""Origin the single-user server accepts API calls from (--ServerApp.allow_origin).

        Default: the origin of c.JupyterHub.public_url. Behind the proxy with
        --change-origin the server sees its own app host but the browser's
        Origin is the hub's public URL, so without this every API call is
        blocked as cross-origin.
        """,
    ).tag(config=True)

    profile_list = Union(
        [List(Dict()), Dict(), Callable()],
        default_value=[],
        help="""Server profiles users choose from on the spawn page (KubeSpawner's profile_list works unchanged).

        A list of dicts with display_name, description, default, an optional
        slug (made from display_name when missing) and overrides, or
        KubeSpawner's kubespawner_override and profile_options (choices, and
        an unlisted_choice whose typed value fills {value}). Overrides may set
        image, cpu, memory, workload_profile, cpu_limit, mem_limit,
        cpu_guarantee, mem_guarantee, environment and default_url; other
        kubespawner_override keys (node_selector, tolerations, ...) mean
        nothing on Container Apps and are logged once and ignored. Also a
        dict of such profiles, or a callable (may be async) taking the
        spawner and returning either. Users can only pick a listed profile
        and listed choices; a typed value must match validation_regex, and
        the functions' allowed images (ACA_ALLOWED_IMAGES) are the final
        check of any image.
        """,
    ).tag(config=True)

    # --- timing ---------------------------------------------------------------------------------

    start_timeout = Integer(
        600,
        help="""Seconds to wait for a server to run before giving up (then a stop is sent).

        ACA needs minutes to pull an image and provision an app, so the
        JupyterHub default of 60 s is far too short.
        """,
    ).tag(config=True)

    resend_after = Float(
        75.0,
        help="""Seconds a start may show no sign of progress before the spawner sends it again.

        "No sign" means no status row for the request, or a row that has not
        changed: while Azure works the functions note progress at least every
        30 s. The same request (same generation) goes out again, so the
        functions treat it as a duplicate and only pick up where a crashed or
        restarted Function App left it; the wait doubles after each resend.
        """,
    ).tag(config=True)

    http_timeout = Integer(
        120, help="Seconds to wait for a running server to answer HTTP (a cold container can be slow)."
    ).tag(config=True)

    stop_timeout = Integer(
        180,
        help="""Seconds stop() waits for the table to report the server stopped.

        The stop request stays queued either way; after this the hub moves on.
        """,
    ).tag(config=True)

    status_poll_interval = Float(
        15.0,
        help="""Seconds between reads of the status table while no server is starting or stopping.

        One query reads every server of the hub, however many users there are.
        """,
    ).tag(config=True)

    status_poll_interval_fast = Float(
        0.25,
        help="""Seconds between reads of the status table while a server is starting or stopping.

        One query serves every waiting spawner of the hub; it is what a user
        waits on top of Azure once the functions have recorded the outcome.
        """,
    ).tag(config=True)

    report_interval = Float(
        60.0,
        help="""Seconds between reads of the functions' report for the hub's gauges on ``/hub/metrics``.

        ``jupyterhub_aca_environment_cores``, ``…_environment_servers``,
        ``…_warm_servers`` and ``…_timer_last_run_*``: two small queries per
        read, made while the hub watches any server (docs/observability.md).
        """,
    ).tag(config=True)

    @validate("cpu")
    def _valid_cpu(self, proposal):
        return _checked(validate_cpu, proposal)

    @validate("memory")
    def _valid_memory(self, proposal):
        return _checked(validate_memory, proposal)

    @validate("profile_list")
    def _valid_profiles(self, proposal):
        if not callable(proposal.value):  # a callable's profiles are checked when it is called
            _checked(profile_config.parse_profiles, proposal)
        return proposal.value

    @validate("status_poll_interval", "status_poll_interval_fast", "resend_after")
    def _positive_interval(self, proposal):
        if proposal.value <= 0:
            raise TraitError(f"{proposal.trait.name} must be positive")
        return proposal.value


def _checked(check, proposal):
    """Run ``check`` on a proposed value; its ValueError becomes the TraitError traitlets reports."""
    try:
        return check(proposal.value)
    except ValueError as e:
        raise TraitError(f"c.AcaSpawner.{proposal.trait.name}: {e}") from None
