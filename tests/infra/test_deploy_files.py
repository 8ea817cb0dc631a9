"""azure.yaml, the azd parameters, the hub image and the CI workflow fit together."""

import ast
import json
import re
import sys

import yaml
from bicepcheck import INFRA, ROOT, Ref, declared, expression, get, objects, params, parse_file, resources, variable

MAIN = INFRA / "main.bicep"
DOCKERFILE = ROOT / "hub" / "Dockerfile"


def azure_yaml():
    return yaml.safe_load((ROOT / "azure.yaml").read_text())


def test_azd_services_point_at_the_right_places():
    project = azure_yaml()
    assert (ROOT / project["infra"]["path"] / f"{project['infra']['module']}.bicep") == MAIN
    hub = project["services"]["hub"]
    assert hub["host"] == "containerapp"
    hub_dir = ROOT / hub["project"]
    assert (hub_dir / hub["docker"]["path"]).resolve() == DOCKERFILE
    assert (hub_dir / hub["docker"]["context"]).resolve() == ROOT
    functions = project["services"]["functions"]
    assert functions["host"] == "function" and functions["language"] == "python"
    assert (ROOT / functions["project"]).resolve() == ROOT
    assert (ROOT / "host.json").exists() and (ROOT / "requirements.txt").exists()


def test_azd_finds_the_apps_by_service_tag():
    project = azure_yaml()
    assert set(project["services"]) == {"hub", "functions"}
    for service, module, app_type in (
        ("hub", "hub", "Microsoft.App/containerApps"),
        ("functions", "functions", "Microsoft.Web/sites"),
    ):
        (app,) = resources(parse_file(INFRA / "modules" / f"{module}.bicep"), app_type).values()
        tagged = [o["azd-service-name"] for o in objects(app["tags"]) if "azd-service-name" in o]
        assert tagged == [service], service
    outputs = declared(parse_file(MAIN), "output")
    assert {"AZURE_CONTAINER_REGISTRY_ENDPOINT", "AZURE_RESOURCE_GROUP", "HUB_URL", "OAUTH_CALLBACK_URL"} <= set(
        outputs
    )


def hook_runs() -> list[tuple[str, str, str]]:
    """(event, platform, run) of every azd hook, the project's and the hub service's."""
    project = azure_yaml()
    found = [(event, platform, spec["run"]) for event, by_platform in project["hooks"].items()
             for platform, spec in by_platform.items()]
    for name, service in project["services"].items():
        found += [(f"{name}.{event}", platform, spec["run"]) for event, by_platform in service.get("hooks", {}).items()
                  for platform, spec in by_platform.items()]
    return found


def test_hooks_exist_and_use_only_the_standard_library():
    scripts = set()
    for event, platform, run in hook_runs():
        named = re.findall(r"\bpython3? (infra/hooks/\w+\.py)", run)
        assert named, (event, platform, run)
        scripts |= set(named)
    siblings = {p.stem for p in (ROOT / "infra" / "hooks").glob("*.py")}
    for script in sorted(scripts):
        path = ROOT / script
        assert path.exists(), script
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported <= set(sys.stdlib_module_names) | siblings, (script, imported - set(sys.stdlib_module_names))


def test_the_same_hooks_run_on_both_platforms_and_the_hub_is_stopped_around_every_change():
    runs = {(event, platform): run.replace("python3 ", "python ") for event, platform, run in hook_runs()}
    for event, _platform in runs:
        assert runs[(event, "posix")] == runs[(event, "windows")], event
    posix = {event: run for (event, platform), run in runs.items() if platform == "posix"}
    # rights first (fail before anything is created), the hub stopped last (just before the change)
    assert posix["preprovision"].startswith("python infra/hooks/check_rights.py && ")
    assert posix["preprovision"].endswith("python infra/hooks/hub_rollout.py stop")
    assert posix["postprovision"] == "python infra/hooks/hub_rollout.py start"
    assert posix["hub.predeploy"] == "python infra/hooks/hub_rollout.py stop"
    assert posix["hub.postdeploy"] == "python infra/hooks/hub_rollout.py start"


def test_parameters_file_matches_main_bicep():
    parameters = {p.name: p for p in params(MAIN.read_text())}
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(mapped) <= set(parameters)
    # azd must supply every parameter without a default (else it would prompt or fail)
    assert {name for name, p in parameters.items() if not p.has_default} <= set(mapped)
    # secrets come from the azd environment, which the preprovision hook fills
    hook = (INFRA / "hooks" / "ensure_secrets.py").read_text()
    for name, p in parameters.items():
        if p.secure and name != "oauthClientSecret":
            env_name = re.fullmatch(r"\$\{(\w+)\}", mapped[name]["value"]).group(1)
            assert f'"{env_name}"' in hook, name


def test_generated_secrets_fit_their_parameters():
    namespace = {}
    exec(compile((INFRA / "hooks" / "ensure_secrets.py").read_text(), "ensure_secrets.py", "exec"), namespace)
    parameters = {p.name: p for p in params(MAIN.read_text())}
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    by_variable = {
        re.fullmatch(r"\$\{(\w+)\}", v["value"]).group(1): k for k, v in mapped.items() if "=" not in v["value"]
    }
    for env_name, make in namespace["GENERATED"].items():
        value = make()
        minimum = parameters[by_variable[env_name]].decorator("min_length")
        assert minimum and len(value) >= minimum["argument"], env_name
    from cryptography.fernet import Fernet

    Fernet(namespace["fernet_key"]())  # a valid Fernet key
    assert len(bytes.fromhex(namespace["hex32"]())) == 32
    assert "postgres_password" not in namespace  # the database has no password (Entra sign-in only)


def test_hub_image_installs_what_the_config_needs():
    dockerfile = DOCKERFILE.read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert '"jupyterhub==6.1.*"' in dockerfile and "psycopg2-binary" in dockerfile and "oauthenticator" in dockerfile
    assert "COPY spawner " in dockerfile and '"/tmp/spawner[hub]"' in dockerfile
    # the proxy version is the one the tests run against
    chp = json.loads((ROOT / "package.json").read_text())["devDependencies"]["configurable-http-proxy"]
    assert f"ARG CHP_VERSION={chp}" in dockerfile
    # the config is copied where the command loads it from
    copied = re.search(r"^COPY hub/jupyterhub_config\.py (\S+)$", dockerfile, re.MULTILINE).group(1)
    command = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    assert command == ["jupyterhub", "--config", copied]
    # and it exposes the two ports the container app maps
    assert re.search(r"^EXPOSE 8000 8081$", dockerfile, re.MULTILINE)


def test_ci_workflow_builds_bicep_and_runs_the_tests():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "az bicep build --file infra/main.bicep" in runs
    assert "make test" in runs
    versions = {step.get("with", {}).get("node-version") for step in steps} | {
        step.get("with", {}).get("python-version") for step in steps
    }
    assert "20" in versions
    test_job = workflow["jobs"]["test"]
    assert test_job["runs-on"] == "ubuntu-latest" and test_job["container"].startswith("python:3.11")


def test_the_placeholder_revision_is_reached_on_the_port_it_listens_on():
    """A first provision runs containerapps-helloworld (port 80) until azd deploys the hub image (port 8000)."""
    hub = parse_file(INFRA / "modules" / "hub.bicep")
    main = parse_file(MAIN)
    assert variable(main, "placeholderImage") == "mcr.microsoft.com/azuredocs/containerapps-helloworld:latest"
    assert variable(hub, "placeholderPort") == 80 and variable(hub, "proxyPort") == 8000
    (app,) = resources(hub, "Microsoft.App/containerApps").values()
    assert get(app, "properties", "configuration", "ingress", "targetPort") == expression(
        "isPlaceholderImage ? placeholderPort : proxyPort"
    )
    assert get(app, "properties", "template", "containers", 0, "image") == Ref("image")
