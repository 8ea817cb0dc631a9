"""hub/jupyterhub_config.py: the shipped routing settings, the culler service, and agreement with hub.bicep."""

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    Call,
    Ref,
    environment_reads,
    expression,
    get,
    module_params,
    output,
    params,
    parse_file,
    resources,
    strip_comments,
    variable,
)
from traitlets.config import Config

CONFIG = ROOT / "hub" / "jupyterhub_config.py"
REQUIRED = {
    "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org",
    "JUPYTERHUB_HUB_CONNECT_URL": "http://jupyterhub:8081",
    "JUPYTERHUB_DB_URL": "postgresql://jupyterhub:pw@psql.example/jupyterhub?sslmode=require",
    "JUPYTERHUB_COOKIE_SECRET": "ab" * 32,
    "JUPYTERHUB_CRYPT_KEY": "cd" * 32,
    "ACA_HUB_ID": "hub1",
    "ACA_SEALING_KEYS": "k1,k2",
    "ACA_QUEUE_ACCOUNT_URL": "https://stq.queue.core.windows.net/",
    "ACA_TABLE_ACCOUNT_URL": "https://stq.table.core.windows.net/",
    "ACA_SINGLEUSER_IMAGE": "quay.io/jupyter/base-notebook:latest",
}
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


@pytest.fixture
def environ(monkeypatch):
    """A clean environment: nothing the config reads is inherited from the test process."""
    for name in environment_reads(CONFIG.read_text()):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def load() -> Config:
    config = Config()
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), {"get_config": lambda: config, "__name__": "config"})
    return config


def test_missing_required_variables_are_named_together(environ):
    with pytest.raises(RuntimeError) as error:
        load()
    message = str(error.value)
    for name in REQUIRED:
        assert name in message


def test_one_missing_variable_is_named(environ):
    environ(**{k: v for k, v in REQUIRED.items() if k != "ACA_SEALING_KEYS"})
    with pytest.raises(RuntimeError, match=r"missing required environment variable\(s\): ACA_SEALING_KEYS$"):
        load()


def test_routing_settings(environ):
    environ(**REQUIRED)
    c = load()
    assert c.ConfigurableHTTPProxy.command == ["configurable-http-proxy", "--change-origin"]
    assert c.JupyterHub.public_url == "https://hub.example.org/"
    assert c.JupyterHub.bind_url == "http://0.0.0.0:8000"
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:8081"
    assert c.JupyterHub.hub_connect_url == "http://jupyterhub:8081"
    assert c.JupyterHub.db_url == REQUIRED["JUPYTERHUB_DB_URL"]
    assert c.JupyterHub.spawner_class == "aca"
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.upgrade_db is True


def test_spawner_settings(environ):
    environ(
        **REQUIRED,
        ACA_SINGLEUSER_CPU="1",
        ACA_SINGLEUSER_MEMORY="2Gi",
        ACA_WORKLOAD_PROFILE="d4",
        ACA_HOME_STORAGE_NAME="homes",
        ACA_START_TIMEOUT="1200",
        ACA_PROFILE_LIST='[{"display_name": "Small", "slug": "small", "overrides": {"cpu": 0.5, "memory": "1Gi"}}]',
        AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000001",
    )
    s = load().AcaSpawner
    assert s.hub_id == "hub1" and s.sealing_keys == "k1,k2"
    assert s.cpu == 1.0 and isinstance(s.cpu, float) and s.memory == "2Gi"
    assert s.workload_profile == "d4"
    assert s.image == REQUIRED["ACA_SINGLEUSER_IMAGE"]
    assert s.home_storage_name == "homes" and s.home_mount_path == "/home/jovyan"
    assert s.home_mount_options == "uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl"
    assert s.queue_account_url == REQUIRED["ACA_QUEUE_ACCOUNT_URL"]
    assert s.table_account_url == REQUIRED["ACA_TABLE_ACCOUNT_URL"]
    assert s.storage_client_id == "00000000-0000-0000-0000-000000000001"
    assert s.queue_name == "aca-lifecycle" and s.table_name == "acaservers"
    assert s.start_timeout == 1200
    assert s.profile_list[0]["slug"] == "small"
    assert "storage_connection_string" not in s


def test_settings_are_traits_the_spawner_and_hub_accept(environ):
    from jupyterhub.app import JupyterHub

    from acaspawner.spawner import AcaSpawner

    environ(**REQUIRED, ACA_CULLER_API_TOKEN="t" * 64)
    c = load()
    traits = AcaSpawner.class_traits(config=True)
    assert set(c.AcaSpawner) <= set(traits)
    spawner = AcaSpawner(config=c)  # runs the trait validators
    assert spawner.cpu == 0.5 and spawner.start_timeout == 900
    hub = JupyterHub(config=c)
    assert hub.public_url == "https://hub.example.org/"
    assert len(hub.cookie_secret) == 32
    assert hub.spawner_class is AcaSpawner  # the "aca" entry point


def test_local_connection_string_replaces_account_urls(environ):
    environ(**{k: v for k, v in REQUIRED.items() if not k.endswith("ACCOUNT_URL")})
    environ(ACA_STORAGE_CONNECTION_STRING="UseDevelopmentStorage=true")
    s = load().AcaSpawner
    assert s.storage_connection_string == "UseDevelopmentStorage=true"
    assert "queue_account_url" not in s


def test_culler_service_and_role(environ):
    environ(**REQUIRED, ACA_CULLER_API_TOKEN="t" * 64)
    c = load()
    assert c.JupyterHub.services[0] == {"name": "aca-idle-culler", "api_token": "t" * 64}
    assert c.JupyterHub.load_roles == [
        {"name": "aca-idle-culler", "scopes": CULLER_SCOPES, "services": ["aca-idle-culler"]}
    ]


def test_culling_users_adds_exactly_read_and_delete_users_then(environ):
    environ(**REQUIRED, ACA_CULLER_API_TOKEN="t" * 64, ACA_CULL_USERS="true")
    (role,) = load().JupyterHub.load_roles
    assert role["scopes"] == [*CULLER_SCOPES, "read:users", "delete:users"]


def test_without_culler_token_no_service(environ):
    environ(**REQUIRED)
    c = load()
    assert [s["name"] for s in c.JupyterHub.services] == ["aca-status"] and "load_roles" not in c.JupyterHub


def test_status_page_gets_the_storage_settings_and_nothing_else(environ):
    environ(**REQUIRED, ACA_CULLER_API_TOKEN="t" * 64)
    status = load().JupyterHub.services[1]
    assert status["name"] == "aca-status" and status["url"].startswith("http://127.0.0.1:")
    assert status["command"][1:] == ["-m", "acaspawner.status_page"]
    # the page reads the table with the hub's identity; no token, key or cookie secret of the hub reaches it
    assert set(status["environment"]) <= {"ACA_HUB_ID", "ACA_STATUS_TABLE", "ACA_TABLE_ACCOUNT_URL",
                                          "ACA_QUEUE_ACCOUNT_URL", "AZURE_CLIENT_ID", "ACA_STORAGE_CONNECTION_STRING"}
    assert status["environment"]["ACA_HUB_ID"] == REQUIRED["ACA_HUB_ID"]
    assert "api_token" not in status  # JupyterHub makes one for a managed service


def test_status_page_can_be_turned_off(environ):
    environ(**REQUIRED, ACA_STATUS_PAGE="false")
    assert "services" not in load().JupyterHub or not load().JupyterHub.services


def test_without_oauth_client_nobody_can_log_in(environ):
    environ(**REQUIRED)
    c = load()
    assert c.JupyterHub.authenticator_class == "jupyterhub.auth.NullAuthenticator"


def test_github_login(environ):
    environ(
        **REQUIRED,
        OAUTH_CLIENT_ID="id",
        OAUTH_CLIENT_SECRET="secret",
        ACA_ADMIN_USERS="alice, bob",
        ACA_ALLOWED_USERS="carol",
    )
    c = load()
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert c.OAuthenticator.client_id == "id" and c.OAuthenticator.client_secret == "secret"
    assert c.OAuthenticator.oauth_callback_url == "https://hub.example.org/hub/oauth_callback"
    assert c.Authenticator.admin_users == {"alice", "bob"}
    assert c.Authenticator.allowed_users == {"carol"}
    assert c.Authenticator.enable_auth_state is True


def test_entra_login_needs_tenant_and_secret(environ):
    environ(**REQUIRED, ACA_AUTHENTICATOR="azuread", OAUTH_CLIENT_ID="id")
    with pytest.raises(RuntimeError, match="OAUTH_CLIENT_SECRET, AAD_TENANT_ID"):
        load()
    environ(OAUTH_CLIENT_SECRET="s", AAD_TENANT_ID="tenant", OAUTH_CALLBACK_URL="https://x/hub/oauth_callback")
    c = load()
    assert c.JupyterHub.authenticator_class == "oauthenticator.azuread.AzureAdOAuthenticator"
    assert c.AzureAdOAuthenticator.tenant_id == "tenant"
    assert c.AzureAdOAuthenticator.username_claim == "upn"
    assert c.OAuthenticator.oauth_callback_url == "https://x/hub/oauth_callback"


def test_bad_values_fail_clearly(environ):
    environ(**REQUIRED, ACA_AUTHENTICATOR="pam")
    with pytest.raises(RuntimeError, match="ACA_AUTHENTICATOR"):
        load()
    environ(ACA_AUTHENTICATOR="github", ACA_SINGLEUSER_CPU="lots")
    with pytest.raises(RuntimeError, match="ACA_SINGLEUSER_CPU"):
        load()
    environ(ACA_SINGLEUSER_CPU="1", ACA_CULL_USERS="maybe", ACA_CULLER_API_TOKEN="t")
    with pytest.raises(RuntimeError, match="ACA_CULL_USERS"):
        load()
    environ(ACA_CULL_USERS="false", ACA_PROFILE_LIST="[not json")
    with pytest.raises(RuntimeError, match="ACA_PROFILE_LIST"):
        load()


def test_ports_agree_with_the_hub_app():
    """The proxy and hub ports of the config are the hub app's ingress and internal port mapping."""
    hub = parse_file(INFRA / "modules" / "hub.bicep")
    main = parse_file(INFRA / "main.bicep")
    config = CONFIG.read_text()
    proxy_port, hub_port = variable(hub, "proxyPort"), variable(hub, "hubPort")
    assert isinstance(proxy_port, int) and isinstance(hub_port, int)
    assert f'c.JupyterHub.bind_url = "http://0.0.0.0:{proxy_port}"' in config
    assert f'c.JupyterHub.hub_bind_url = "http://0.0.0.0:{hub_port}"' in config
    (app,) = resources(hub, "Microsoft.App/containerApps").values()
    ingress = get(app, "properties", "configuration", "ingress")
    # the hub image's ingress targets the proxy (a first provision's placeholder: its own port)
    assert ingress["targetPort"] == expression("isPlaceholderImage ? placeholderPort : proxyPort")
    assert ingress["transport"] == "http"
    assert ingress["additionalPortMappings"] == [
        {"external": False, "targetPort": Ref("hubPort"), "exposedPort": Ref("hubPort")}
    ]
    assert variable(main, "hubConnectUrl") == f"http://${{hubAppName}}:{hub_port}"
    assert get(app, "properties", "template", "scale") == {"minReplicas": 1, "maxReplicas": 1}


def test_the_database_login_uses_the_hubs_entra_identity_when_asked(environ, monkeypatch):
    import acaspawner.pgentra as pgentra

    calls = []
    monkeypatch.setattr(pgentra, "sign_in_with_entra", lambda **kw: calls.append(kw))
    environ(**{**REQUIRED, "JUPYTERHUB_DB_URL": "postgresql://id-hub@psql.example:5432/jupyterhub?sslmode=require"},
            JUPYTERHUB_DB_ENTRA_AUTH="true", AZURE_CLIENT_ID="client-1")
    load()
    assert calls == [{"client_id": "client-1"}]


def test_without_the_flag_the_database_url_is_used_as_given(environ, monkeypatch):
    import acaspawner.pgentra as pgentra

    monkeypatch.setattr(pgentra, "sign_in_with_entra", lambda **kw: pytest.fail("no Entra sign-in expected"))
    environ(**REQUIRED)
    assert load().JupyterHub.db_url == REQUIRED["JUPYTERHUB_DB_URL"]


def test_hub_bicep_gives_a_passwordless_url_and_turns_entra_sign_in_on():
    hub = parse_file(INFRA / "modules" / "hub.bicep")
    env = variable(hub, "containerEnv")
    assert {"name": "JUPYTERHUB_DB_URL", "value": Ref("dbUrl")} in env
    assert {"name": "JUPYTERHUB_DB_ENTRA_AUTH", "value": "true"} in env
    assert "db-url" not in strip_comments((INFRA / "modules" / "hub.bicep").read_text())  # no database secret
    assert module_params(parse_file(INFRA / "main.bicep"), "hub")["dbUrl"] == expression("postgres.outputs.entraDbUrl")
    assert "postgresAdminPassword" not in strip_comments((INFRA / "main.bicep").read_text())


def test_postgres_accepts_entra_logins_only_with_the_hub_as_administrator():
    postgres = parse_file(INFRA / "modules" / "postgres.bicep")
    (server,) = resources(postgres, "Microsoft.DBforPostgreSQL/flexibleServers").values()
    auth = get(server, "properties", "authConfig")
    assert (auth["activeDirectoryAuth"], auth["passwordAuth"]) == ("Enabled", "Disabled")
    assert "administratorLoginPassword" not in strip_comments((INFRA / "modules" / "postgres.bicep").read_text())
    (admin,) = resources(postgres, "Microsoft.DBforPostgreSQL/flexibleServers/administrators").values()
    assert admin["name"] == Ref("adminPrincipalId")
    assert get(admin, "properties", "principalType") == "ServicePrincipal"
    assert get(admin, "properties", "principalName") == Ref("adminPrincipalName")
    # the URL's user is the identity's name: the role Azure creates for an Entra administrator
    # the driver the hub image installs (psycopg2-binary); SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3
    assert output(postgres, "entraDbUrl").startswith("postgresql+psycopg2://${uriComponent(adminPrincipalName)}@")
    main = parse_file(INFRA / "main.bicep")
    assert module_params(main, "postgres")["adminPrincipalName"] == expression("identities.outputs.hubName")


# --- limits (review M3) and user config (S3) --------------------------------------------------------

LIMITS = {
    # variable: (JupyterHub trait, default)
    "ACA_NAMED_SERVER_LIMIT_PER_USER": ("named_server_limit_per_user", 2),
    "ACA_ACTIVE_SERVER_LIMIT": ("active_server_limit", 0),
    "ACA_CONCURRENT_SPAWN_LIMIT": ("concurrent_spawn_limit", 150),
}


def test_named_servers_are_limited_by_default(environ):
    """JupyterHub's own default (0) lets one user start named servers until the core budget is full."""
    from jupyterhub.app import JupyterHub

    environ(**REQUIRED, ACA_ALLOW_NAMED_SERVERS="true")
    c = load()
    for trait, default in LIMITS.values():
        assert c.JupyterHub[trait] == default, trait
    assert c.JupyterHub.named_server_limit_per_user > 0
    # above JupyterHub's 100, about one class: starts take minutes here
    assert c.JupyterHub.concurrent_spawn_limit > JupyterHub.class_traits()["concurrent_spawn_limit"].default_value
    hub = JupyterHub(config=c)
    assert (hub.named_server_limit_per_user, hub.concurrent_spawn_limit) == (2, 150)


def test_limits_come_from_the_environment(environ):
    environ(**REQUIRED, ACA_NAMED_SERVER_LIMIT_PER_USER="5", ACA_ACTIVE_SERVER_LIMIT="300",
            ACA_CONCURRENT_SPAWN_LIMIT="0")
    c = load()
    assert (c.JupyterHub.named_server_limit_per_user, c.JupyterHub.active_server_limit,
            c.JupyterHub.concurrent_spawn_limit) == (5, 300, 0)


@pytest.mark.parametrize("variable", sorted(LIMITS))
@pytest.mark.parametrize("value", ["-1", "lots", "2.5", "²"])
def test_a_limit_that_is_not_a_whole_number_fails_clearly(environ, variable, value):
    environ(**REQUIRED, **{variable: value})
    with pytest.raises(RuntimeError, match=variable):
        load()


def test_servers_ignore_jupyter_config_in_the_users_home(environ):
    """disable_user_config: a config file in a (shared or planted) home cannot loosen the server's settings.

    That the spawner hands it on to the server is checked in tests/spawner (JUPYTERHUB_DISABLE_USER_CONFIG).
    """
    from acaspawner.spawner import AcaSpawner

    environ(**REQUIRED)
    c = load()
    assert c.Spawner.disable_user_config is True
    assert AcaSpawner(config=c).disable_user_config is True


def test_hub_bicep_sets_each_limit_from_a_main_bicep_parameter():
    hub = parse_file(INFRA / "modules" / "hub.bicep")
    main = parse_file(INFRA / "main.bicep")
    defaults = {p.name: p.default for p in params((INFRA / "main.bicep").read_text())}
    passed = module_params(main, "hub")
    env = variable(hub, "containerEnv")
    for name, (_trait, default) in LIMITS.items():
        (entry,) = [e for e in env if isinstance(e, dict) and e.get("name") == name]
        argument = entry["value"]
        assert isinstance(argument, Call) and argument.name == "string", name
        (parameter,) = argument.args.values()
        assert isinstance(parameter, Ref) and passed[parameter.name] == Ref(parameter.name), name
        assert defaults[parameter.name] == default, name  # what Azure gets is the config's own default


async def test_client_addresses_cannot_be_trusted_so_trusted_downstream_ips_stays_unset(environ):
    """docs/security.md: Tornado, which JupyterHub runs with xheaders, takes a client's X-Real-Ip over the chain.

    Trusting the ingress's addresses (``trusted_downstream_ips``) would not make ``remote_ip`` trustworthy, so
    the hub does not pretend to; JupyterHub uses it for logs and the login page's anonymous XSRF id only.
    """
    import tornado.httpclient
    import tornado.httpserver
    import tornado.netutil
    import tornado.web

    environ(**REQUIRED)
    assert "trusted_downstream_ips" not in load().JupyterHub

    class Echo(tornado.web.RequestHandler):
        def get(self):
            self.write(self.request.remote_ip)

    # as JupyterHub starts its server (app.py: xheaders=True, trusted_downstream=trusted_downstream_ips)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", Echo)]), xheaders=True,
                                           trusted_downstream=["10.0.0.7"])
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    try:
        client = tornado.httpclient.AsyncHTTPClient()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        chain = {"X-Forwarded-For": "203.0.113.5, 10.0.0.7"}  # client, then a trusted ingress
        assert (await client.fetch(url, headers=chain)).body == b"203.0.113.5"
        spoofed = {**chain, "X-Real-Ip": "198.51.100.66"}  # a header the client chose
        assert (await client.fetch(url, headers=spoofed)).body == b"198.51.100.66"
    finally:
        server.stop()
