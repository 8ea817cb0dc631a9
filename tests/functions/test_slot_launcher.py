"""The warm slot's launcher (functions/slot_launcher.py), run as the file it is shipped as.

Most tests run it as a real process with this venv's Python (which has the
Jupyter stack), a temporary slot folder and a free port, and talk to it over
HTTP; a stand-in for the hub's API answers the single-user server's calls.
The times it takes are printed (``pytest -s``), never asserted: two shared
cores make wall-clock bounds flaky.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import jupyterhub
import pytest
from cryptography.fernet import Fernet
from waiting import wait_until

from local.emulator import pytest_fixtures

LAUNCHER = Path(__file__).resolve().parents[2] / "functions" / "slot_launcher.py"
CLAIMS = LAUNCHER.with_name("slot_claims.py")  # shipped beside it
STARTUP = 120.0  # seconds a launcher may take to import the Jupyter stack on a busy 2-core machine

# the emulator's fixtures, for the test that runs a slot as the functions build it
aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator
aca_credential = pytest_fixtures.aca_credential
aca_client = pytest_fixtures.aca_client


def load_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def load_launcher() -> ModuleType:
    """The launcher imported from its file, as the functions ship it (not as part of the ``functions`` package).

    Its sibling is loaded first under the name the launcher imports it by, so that the launcher does not put
    ``functions/`` on this process's ``sys.path`` to find it.
    """
    load_file("slot_claims", CLAIMS)
    return load_file("slot_launcher_under_test", LAUNCHER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, body) of one request to 127.0.0.1:port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def answers(port: int, path: str) -> tuple[int, str] | None:
    """The answer to GET ``path``, or None while nothing listens."""
    try:
        return request(port, "GET", path)
    except OSError:
        return None


# ---- a stand-in for the hub's API ----------------------------------------------------------------------


class FakeHub:
    """Answers every request 200 with JupyterHub's version header, as the hub's API root does; records them."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append((self.command, self.path, self.headers.get("Authorization", "")))
                body = json.dumps({"version": jupyterhub.__version__}).encode()
                self.send_response(200)
                self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    yield hub
    hub.close()


def hub_env(hub: FakeHub, user: str = "alice", token: str = "user-api-token-0123456789") -> dict[str, str]:
    """The environment JupyterHub's Spawner.get_env gives a user's default server (JupyterHub 6.1)."""
    prefix = f"/user/{user}/"
    scopes = json.dumps([f"access:servers!server={user}/"])
    return {
        "JUPYTERHUB_API_TOKEN": token, "JPY_API_TOKEN": token,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": scopes, "JUPYTERHUB_OAUTH_ACCESS_SCOPES": scopes,
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_USER": user, "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_ACTIVITY_URL": f"{hub.api_url}/users/{user}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{prefix}",  # the launcher's own port wins over this one
    }


def root_args() -> list[str]:
    # jupyter_server refuses to run as root; the Jupyter images run as jovyan, this machine's tests may not
    return ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []


def seal(key: bytes, *, at: float | None = None, **fields: object) -> bytes:
    """A claim sealed with ``key``; ``fields`` override (or, set to None, remove) the defaults."""
    claim: dict[str, object] = {"nonce": "nonce-1", "expires": time.time() + 60, "server_key": "alice",
                                "env": {"A": "1"}, "args": []}
    claim.update(fields)
    claim = {k: v for k, v in claim.items() if v is not None}
    data = json.dumps(claim).encode()
    return Fernet(key).encrypt(data) if at is None else Fernet(key).encrypt_at_time(data, int(at))


# ---- a launcher process ----------------------------------------------------------------------------------


@dataclass
class Launcher:
    """A launcher process and what it was given."""

    proc: subprocess.Popen
    port: int
    slot_dir: Path
    log_path: Path
    key: bytes
    started: float  # time.monotonic() at its start
    ready_after: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.slot_dir / "home"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = STARTUP) -> tuple[int, str]:
        def listening() -> tuple[int, str] | None:
            assert self.proc.poll() is None, f"the launcher exited ({self.proc.returncode}): {self.log()[-3000:]}"
            return answers(self.port, "/slot/ready")

        found = wait_until(listening, timeout=timeout, interval=0.02, what="the launcher to listen",
                           describe=lambda: self.log()[-2000:])
        self.ready_after = time.monotonic() - self.started
        return found


def clean_env() -> dict[str, str]:
    """This environment without what would change where Jupyter looks (the image's own would not have it)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("JUPYTER", "XDG_", "ACA_SLOT_", "JPY_", "PYTHON"))}


@pytest.fixture
def start_launcher(tmp_path: Path) -> Iterator:
    """``start(python=[...], **env)`` → a running Launcher (ended after the test, with its process group)."""
    started: list[Launcher] = []

    def start(python: list[str] | None = None, **env: str) -> Launcher:
        index = len(started)
        slot_dir = tmp_path / f"slot{index}"
        slot_dir.mkdir()
        key = Fernet.generate_key()
        port = free_port()
        log_path = tmp_path / f"launcher{index}.log"
        full_env = {**clean_env(), "ACA_SLOT_KEY": key.decode(), "ACA_SLOT_DIR": str(slot_dir),
                    "ACA_SLOT_HOST": "127.0.0.1", "PORT": str(port), **env}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*(python or [sys.executable]), str(LAUNCHER)], env=full_env, cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        launcher = Launcher(proc, port, slot_dir, log_path, key, time.monotonic())
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        if launcher.proc.poll() is None:
            os.killpg(launcher.proc.pid, signal.SIGTERM)  # its own group: the server and anything it started
            try:
                launcher.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.proc.pid, signal.SIGKILL)
                launcher.proc.wait(timeout=10)


def move_home_in(tmp_path: Path, launcher: Launcher, files: dict[str, str]) -> Path:
    """The functions' part: a home made elsewhere, moved into the slot's folder by one rename."""
    staged = tmp_path / "homes" / "alice-home"
    staged.mkdir(parents=True)
    for name, text in files.items():
        (staged / name).write_text(text)
    os.rename(staged, launcher.home)
    return launcher.home


# ---- the whole life of a slot ----------------------------------------------------------------------------


def test_a_slot_takes_one_claim_and_becomes_the_users_server(start_launcher, fake_hub, tmp_path):
    launcher = start_launcher()
    assert launcher.wait_listening() == (200, "ready\n")
    print(f"\n[slot launcher] start → ready (pre-import): {launcher.ready_after:.2f} s")
    assert request(launcher.port, "GET", "/user/alice/api")[0] == 404  # nothing but the slot's paths before a claim
    assert request(launcher.port, "GET", "/slot/claim")[0] == 405
    assert not launcher.home.exists()  # importing the stack with HOME set to the home to come created nothing

    # refused claims leave the slot claimable
    other_key = Fernet.generate_key()
    refused = {
        "forged (another key)": seal(other_key),
        "garbled": b"not a token at all",
        "tampered": seal(launcher.key)[:-6] + b"AAAAAA",
        "expired": seal(launcher.key, expires=time.time() - 1),
        "sealed too long ago": seal(launcher.key, at=time.time() - 600),
        "missing field": seal(launcher.key, server_key=None),
        "unknown field": seal(launcher.key, home="/elsewhere"),
        "bad env name": seal(launcher.key, env={"NOT-A-NAME": "x"}),
        "env sets the slot's key": seal(launcher.key, env={"ACA_SLOT_KEY": "x"}),
        "args not strings": seal(launcher.key, args=[1, 2]),
        "expires not a number": seal(launcher.key, expires="soon"),
    }
    for what, body in refused.items():
        status, text = request(launcher.port, "POST", "/slot/claim", body)
        assert status == 403, (what, status, text)
        assert body.decode(errors="replace") not in text, what  # never echoed
    status, _ = request(launcher.port, "POST", "/slot/claim", b"x" * (1024 * 1024 + 1))
    assert status == 413
    assert request(launcher.port, "GET", "/slot/ready") == (200, "ready\n")

    # the claim the hub sends
    token = "user-api-token-0123456789"
    env = hub_env(fake_hub, token=token)
    args = ["--port=1", *root_args()]  # a port in the claim loses to the launcher's own
    sealed = seal(launcher.key, nonce="the-nonce", env=env, args=args)
    claimed = time.monotonic()
    assert request(launcher.port, "POST", "/slot/claim", sealed,
                   {"Content-Type": "application/octet-stream"}) == (202, json.dumps({"accepted": "the-nonce"}))
    # exactly one claim: another one, or the same again, is a conflict while it waits for the home
    assert request(launcher.port, "POST", "/slot/claim", seal(launcher.key, nonce="other"))[0] == 409
    assert request(launcher.port, "POST", "/slot/claim", sealed)[0] == 409
    # a hub polling the server's URL meanwhile sees an error, not a server
    assert request(launcher.port, "GET", "/user/alice/api")[0] == 503
    assert request(launcher.port, "GET", "/slot/ready")[0] == 503

    home = move_home_in(tmp_path, launcher, {"notes.txt": "mine"})
    moved = time.monotonic()

    def server_answers() -> dict | None:
        assert launcher.proc.poll() is None, launcher.log()[-3000:]
        found = answers(launcher.port, "/user/alice/api")
        return json.loads(found[1]) if found and found[0] == 200 else None

    version = wait_until(server_answers, timeout=60, interval=0.01, what="the single-user server",
                         describe=lambda: launcher.log()[-3000:])
    done = time.monotonic()
    print(f"[slot launcher] claim → server answering: {done - claimed:.3f} s "
          f"(home moved in → answering: {done - moved:.3f} s)")
    assert "version" in version

    # the same process is now the user's server
    pid = launcher.proc.pid
    runtime = home / ".local" / "share" / "jupyter" / "runtime" / f"jpserver-{pid}.json"
    info = json.loads(wait_until(lambda: runtime.exists() and runtime.read_text(), what="the server's runtime file"))
    assert info["pid"] == pid and info["port"] == launcher.port and info["base_url"] == "/user/alice/"
    assert Path(info["root_dir"]) == home  # HOME (runtime file) and working directory (root) are the home
    assert os.readlink(f"/proc/{pid}/cwd") == str(home)
    environ_block = Path(f"/proc/{pid}/environ").read_bytes()
    assert launcher.key not in environ_block and b"ACA_SLOT_" not in environ_block
    # the server used the claim's environment: it called the hub's API with the user's token
    # (it does so a moment after it answers: its first activity report)
    wait_until(lambda: any(auth.endswith(token) for _, _, auth in fake_hub.seen), timeout=60, interval=0.05,
               what="a call to the hub's API with the user's token", describe=lambda: str(fake_hub.seen))
    log = launcher.log()
    assert "claim accepted: nonce the-nonce" in log
    assert launcher.key.decode() not in log and token not in log
    assert launcher.proc.poll() is None


def test_a_claimed_slot_whose_home_never_comes_exits(start_launcher):
    launcher = start_launcher(ACA_SLOT_HOME_WAIT="1")
    assert launcher.wait_listening() == (200, "ready\n")
    assert request(launcher.port, "POST", "/slot/claim", seal(launcher.key))[0] == 202
    code = launcher.proc.wait(timeout=60)
    assert code == 3
    assert "did not appear within 1 s" in launcher.log()


# ---- images the launcher cannot serve in -----------------------------------------------------------------


def python_with_only(tmp_path: Path, *packages: str) -> tuple[list[str], dict[str, str]]:
    """A Python that sees no site-packages but ``packages`` (linked from this venv), like a bare image."""
    site_packages = Path(__import__("cryptography").__file__).resolve().parents[1]
    path = tmp_path / "image-site"
    path.mkdir(exist_ok=True)
    for pattern in packages:
        for found in site_packages.glob(pattern):
            (path / found.name).symlink_to(found)
    return [sys.executable, "-S"], {"PYTHONPATH": str(path)}


def test_an_image_without_the_jupyter_stack_answers_503_and_says_why(start_launcher, tmp_path):
    python, env = python_with_only(tmp_path, "cryptography", "cffi", "_cffi_backend*")
    launcher = start_launcher(python=python, **env)
    status, text = launcher.wait_listening(timeout=30)
    assert status == 503
    assert text == "slot not usable: cannot import jupyterhub.singleuser (ModuleNotFoundError: No module named " \
                   "'jupyterhub')\n"
    assert request(launcher.port, "POST", "/slot/claim", seal(launcher.key))[0] == 503
    assert request(launcher.port, "GET", "/anything")[0] == 503
    assert "not usable: cannot import jupyterhub.singleuser" in launcher.log()
    assert launcher.proc.poll() is None  # it stays, saying why, rather than exiting silently


def test_an_image_without_cryptography_answers_503_and_says_why(start_launcher, tmp_path):
    python, env = python_with_only(tmp_path)
    launcher = start_launcher(python=python, **env)
    status, text = launcher.wait_listening(timeout=30)
    assert status == 503 and text.startswith("slot not usable: cannot import cryptography")


@pytest.mark.parametrize(("env", "reason"), [
    ({"ACA_SLOT_KEY": "too-short"}, "ACA_SLOT_KEY is not a Fernet key"),
    ({"ACA_SLOT_CLAIM_TTL": "soon"}, "ACA_SLOT_CLAIM_TTL is not a number of seconds"),
    ({"ACA_SLOT_DIR": "/nonexistent/slot"}, "ACA_SLOT_DIR /nonexistent/slot is not a directory"),
])
def test_bad_settings_answer_503_and_say_why(start_launcher, tmp_path, env, reason):
    # no Jupyter stack needed to find out: a bare Python answers as fast
    python, image_env = python_with_only(tmp_path, "cryptography", "cffi", "_cffi_backend*")
    launcher = start_launcher(python=python, **image_env, **env)
    status, text = launcher.wait_listening(timeout=30)
    assert status == 503 and reason in text
    assert "too-short" not in launcher.log()


def test_a_slot_that_already_holds_a_home_is_not_claimable(start_launcher, tmp_path):
    # a restarted replica of a slot that served a user: it must never take a second claim
    slot_dir = tmp_path / "used-slot"
    (slot_dir / "home").mkdir(parents=True)
    python, image_env = python_with_only(tmp_path, "cryptography", "cffi", "_cffi_backend*")
    launcher = start_launcher(python=python, **image_env, ACA_SLOT_DIR=str(slot_dir))
    status, text = launcher.wait_listening(timeout=30)
    assert status == 503 and "exists already: this slot was claimed before" in text


# ---- the launcher's rules, in process --------------------------------------------------------------------


def test_the_homes_own_packages_come_before_the_images(sl, monkeypatch, tmp_path):
    """``pip install --user`` in the home: the server finds those packages, as a Python started there would."""
    import site

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(site, "USER_BASE", site.USER_BASE)
    monkeypatch.setattr(site, "USER_SITE", site.USER_SITE)
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.delenv("PYTHONUSERBASE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    user_site = tmp_path / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    user_site.mkdir(parents=True)
    sl.adopt_user_site()
    assert site.USER_SITE == str(user_site)
    first_image_site = next(i for i, p in enumerate(sys.path) if p.endswith("site-packages") and p != str(user_site))
    assert sys.path.index(str(user_site)) < first_image_site



@pytest.fixture(scope="module")
def sl() -> ModuleType:
    return load_launcher()


@pytest.fixture(scope="module")
def claims(sl) -> ModuleType:
    return sys.modules["slot_claims"]


@pytest.mark.parametrize("path", [LAUNCHER, CLAIMS], ids=lambda path: path.name)
def test_the_launcher_imports_only_the_standard_library_cryptography_and_its_sibling(path):
    import ast

    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    outside = {name for name in imported - {"__future__"} if name not in sys.stdlib_module_names}
    # the Jupyter stack is imported by name (importlib), from the image, at run time
    assert outside <= {"cryptography", "slot_claims"}, outside
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert relative <= {"slot_claims"}, relative  # the sibling, when the launcher is imported as functions'


def test_the_launcher_finds_its_sibling_without_the_script_folder_on_sys_path(tmp_path):
    """``PYTHONSAFEPATH`` (or ``-P``) keeps the script's folder off ``sys.path``: the sibling is still found."""
    shipped = tmp_path / "launcher"
    shipped.mkdir()
    for source in (LAUNCHER, CLAIMS):
        (shipped / source.name).write_text(source.read_text())
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='probe'); print(sys.modules['slot_claims'].__file__)"
    done = subprocess.run([sys.executable, "-P", "-c", code, str(shipped / LAUNCHER.name)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(shipped / CLAIMS.name)


def test_the_slot_variables_leave_the_environment(sl):
    environ = {"ACA_SLOT_KEY": "k", "ACA_SLOT_DIR": "/mnt/slot", "PORT": "8888", "PATH": "/bin"}
    assert sl.take_slot_environment(environ) == {"ACA_SLOT_KEY": "k", "ACA_SLOT_DIR": "/mnt/slot"}
    assert environ == {"PORT": "8888", "PATH": "/bin"}


def test_the_servers_environment_and_arguments(sl, claims):
    claim = claims.Claim(nonce="n", expires=0.0, server_key="alice", env={"JUPYTERHUB_USER": "alice", "HOME": "/x"},
                     args=["--port=1", "--ServerApp.allow_origin=https://hub", "--ip", "10.0.0.1",
                           "--ServerApp.port=2", "--ServerApp.port_retries=0", "--NotebookApp.ip=x"])
    env = sl.server_environment({"PATH": "/bin", "ACA_SLOT_LEFTOVER": "x", "JUPYTERHUB_USER": "old"}, claim,
                                "/mnt/slot/home")
    assert env == {"PATH": "/bin", "JUPYTERHUB_USER": "alice", "HOME": "/mnt/slot/home"}
    assert sl.server_argv(claim, "0.0.0.0", 8888) == [
        "jupyterhub-singleuser", "--ServerApp.allow_origin=https://hub", "--ServerApp.port_retries=0", "--ip=0.0.0.0",
        "--port=8888"]


@pytest.mark.parametrize(("claim", "reason"), [
    (b"[]", "not a JSON object"),
    (b"\xff", "not JSON"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": {}}, "lacks args"),
    ({"nonce": "", "expires": 9e9, "server_key": "k", "env": {}, "args": []}, "nonce"),
    ({"nonce": "a b", "expires": 9e9, "server_key": "k", "env": {}, "args": []}, "nonce"),
    ({"nonce": "n", "expires": True, "server_key": "k", "env": {}, "args": []}, "expires must be a number"),
    ({"nonce": "n", "expires": float("inf"), "server_key": "k", "env": {}, "args": []}, "expires must be"),
    ({"nonce": "n", "expires": 10.0, "server_key": "k", "env": {}, "args": []}, "expired"),
    ({"nonce": "n", "expires": 9e9, "server_key": 1, "env": {}, "args": []}, "server_key"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": {"1A": "x"}, "args": []}, "environment variable name"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": {"A": 1}, "args": []}, "env values"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": {"A": "a\0"}, "args": []}, "env values"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": [], "args": []}, "env must be"),
    ({"nonce": "n", "expires": 9e9, "server_key": "k", "env": {}, "args": "--x"}, "args must be"),
])
def test_malformed_claims_are_refused(claims, claim, reason):
    plaintext = claim if isinstance(claim, bytes) else json.dumps(claim).encode()
    with pytest.raises(claims.ClaimRefused) as refused:
        claims.parse_claim(plaintext, now=100.0)
    assert refused.value.status == 403 and reason in refused.value.reason


def test_a_well_formed_claim_is_read(claims):
    claim = claims.parse_claim(json.dumps({"nonce": "4f1c", "expires": 200, "server_key": "alice/",
                                       "env": {"JUPYTERHUB_API_TOKEN": "t"}, "args": ["--debug"]}).encode(), now=100)
    assert (claim.nonce, claim.expires, claim.server_key, claim.env, claim.args) == (
        "4f1c", 200.0, "alice/", {"JUPYTERHUB_API_TOKEN": "t"}, ["--debug"])
    assert "JUPYTERHUB_API_TOKEN" not in repr(claim)  # the env (the user's token) never shows in a repr


def test_the_fernet_ttl_is_the_claim_ttl(claims):
    key = Fernet.generate_key()
    fernet = Fernet(key)
    token = fernet.encrypt_at_time(json.dumps({"nonce": "n", "expires": 1e10, "server_key": "k", "env": {},
                                               "args": []}).encode(), 1000)
    assert claims.open_claim(fernet, token, ttl=120, now=1100).nonce == "n"
    with pytest.raises(claims.ClaimRefused, match="too old"):
        claims.open_claim(fernet, token, ttl=120, now=1121)
    with pytest.raises(claims.ClaimRefused, match="sealed with this slot's key"):
        claims.open_claim(Fernet(Fernet.generate_key()), token, ttl=120, now=1100)


# ---- a slot as the functions build it, in the ACA emulator -------------------------------------------------


def test_a_slot_app_runs_the_launcher_from_its_secret_volume(aca_client, aca_emulator, fake_hub, tmp_path):
    """A stock Jupyter image, the launcher as a file of a Secret volume, the slot's folder of the home share:
    ready through the ingress, claimed through it, and the user's server once the home is moved in."""
    account, share = "sthomes", "homes"
    aca_client.managed_environments_storages.create_or_update(
        aca_emulator.resource_group, aca_emulator.environment_name, "homes",
        {"properties": {"azureFile": {"accountName": account, "accountKey": "a2V5", "shareName": share,
                                      "accessMode": "ReadWrite"}}})
    share_dir = aca_emulator.storages.share_dir(account, share)
    (share_dir / "slots" / "ws-test").mkdir(parents=True)
    (share_dir / "users" / "alice").mkdir(parents=True)
    key = Fernet.generate_key()
    container = {
        "name": "notebook", "image": "quay.io/jupyter/base-notebook:latest",
        "command": ["python", "/mnt/launcher/slot_launcher.py"],
        "env": [{"name": "ACA_SLOT_KEY", "secretRef": "slot-key"}, {"name": "ACA_SLOT_DIR", "value": "/mnt/slot"},
                {"name": "ACA_SLOT_HOST", "value": "0.0.0.0"},  # the emulator makes it its loopback address
                {"name": "PORT", "value": "8888"}],
        "resources": {"cpu": 0.5, "memory": "1Gi"},
        "volumeMounts": [{"volumeName": "home", "mountPath": "/mnt/slot", "subPath": "slots/ws-test"},
                         {"volumeName": "launcher", "mountPath": "/mnt/launcher"}],
    }
    body = {
        "location": aca_emulator.location,
        "properties": {
            "environmentId": aca_emulator.environment_id,
            "configuration": {
                "ingress": {"external": False, "targetPort": 8888, "transport": "http", "allowInsecure": True},
                "secrets": [{"name": "slot-key", "value": key.decode()},
                            {"name": "slot-launcher", "value": LAUNCHER.read_text()},
                            {"name": "slot-claims", "value": CLAIMS.read_text()}],
            },
            "template": {
                "containers": [container], "scale": {"minReplicas": 1, "maxReplicas": 1},
                "volumes": [{"name": "home", "storageType": "AzureFile", "storageName": "homes"},
                            {"name": "launcher", "storageType": "Secret",
                             "secrets": [{"secretRef": "slot-launcher", "path": "slot_launcher.py"},
                                         {"secretRef": "slot-claims", "path": "slot_claims.py"}]}],
            },
        },
    }
    started = time.monotonic()
    app = aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, "ws-test", body).result(
        timeout=180)
    fqdn = app.properties.configuration.ingress.fqdn
    port = int(fqdn.rsplit(":", 1)[1])  # the ingress routes by Host: 127.0.0.1:<port> is this app's

    def via_ingress(method: str, path: str, data: bytes | None = None) -> tuple[int, str]:
        return request(port, method, path, data, {"Host": fqdn})

    assert via_ingress("GET", "/slot/ready") == (200, "ready\n")
    print(f"\n[slot launcher] emulator: create → ready through the ingress: {time.monotonic() - started:.2f} s")
    sealed = seal(key, env=hub_env(fake_hub), args=[])
    claimed = time.monotonic()
    assert via_ingress("POST", "/slot/claim", sealed)[0] == 202
    os.rename(share_dir / "users" / "alice", share_dir / "slots" / "ws-test" / "home")  # what the functions do

    def server_answers() -> bool:
        status, _ = via_ingress("GET", "/user/alice/api")
        return status == 200

    wait_until(server_answers, timeout=60, interval=0.01, what="the user's server through the ingress",
               describe=lambda: aca_emulator.apps["ws-test"].log_path.read_text()[-3000:])
    print(f"[slot launcher] emulator: claim → server answering through the ingress: "
          f"{time.monotonic() - claimed:.3f} s")
    pid = aca_emulator.apps["ws-test"].pid
    assert os.readlink(f"/proc/{pid}/cwd") == str(share_dir / "slots" / "ws-test" / "home")
    assert key not in Path(f"/proc/{pid}/environ").read_bytes()
