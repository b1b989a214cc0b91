"""Every framework's one line under every ASGI server teams deploy, over real loopback HTTP.

For each (framework, server) pair the example app from examples/ runs in a real server
process on 127.0.0.1, started once, and these are checked against it:

- a host route answers (pass-through untouched);
- a visitor's start-call is a 401 ``unauthorized`` and nothing reaches OneInbox;
- a user signed in through the framework's own session gets a 201, and the fake
  OneInbox (the emulator's API over uvicorn on loopback) sees their name in the call's
  variables;
- ``widget.js`` answers with its ``ETag`` and ``Cache-Control``, a 304 on ``If-None-Match``,
  and no ``Set-Cookie``;
- at shutdown (SIGTERM) the broker's pooled upstream client is closed, where the server
  runs the ASGI lifespan (daphne does not: there it stays open, as docs/frameworks.md says).

hypercorn serves HTTP/1.1 on one port and HTTP/2 over TLS (ALPN ``h2``, a throwaway CA
from ``trustme``) on another, from one process; granian binds one address, so its
HTTP/2 over TLS is a column of its own. Over HTTP/2 the checks run again, then a
start-call with the cookies split over several ``cookie`` headers, as browsers send
them (hypercorn joins them before the app sees them; granian does not).

Then: the checks fail on a broken setup; Django's ``runserver`` (WSGI) serves no broker,
daphne's does; the README's logging lines show the audit trail under uvicorn; the
broker's early refusals over HTTP/2 keep the connection (hypercorn's HTTP/2 drops it
when body frames arrive after the answer; the broker reads a small body first).
The table of what each pair proved is in docs/frameworks.md ("Servers").
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import AGENT_ID, API_KEY, END, START, WIDGET, error_code, free_port
from .example_flow import CSRF, WIDGET_TAG

ROOT = Path(__file__).resolve().parents[2]

STARTUP_SECONDS = 30.0  # a cold start on a busy 2-core machine; typically 1-2 s
SHUTDOWN_SECONDS = 15.0
REQUEST_SECONDS = 10.0

EXAMPLES = {
    "starlette": "examples.starlette_app:app",
    "fastapi": "examples.fastapi_app:app",
    "quart": "examples.quart_app:app",
    "litestar": "examples.litestar_app:app",
    "django": "examples.django_app:application",
    "falcon": "examples.falcon_app:app",
    "blacksheep": "examples.blacksheep_app:app",
}
SERVERS = ["uvicorn", "hypercorn", "daphne", "granian", "granian-tls"]
#: Servers that never send the ASGI lifespan: nothing tells the broker to close its client.
NO_LIFESPAN = {"daphne"}
#: Servers that hand the app HTTP/2's split ``cookie`` headers unjoined (hypercorn joins
#: them, through the h2 library).
SPLITS_COOKIES = {"granian-tls"}
#: Frameworks whose own session reads only the first ``cookie`` header.
FIRST_COOKIE_HEADER_ONLY = {"litestar"}
#: Frameworks whose own pages lose the session when cookies come split: Litestar reads
#: the first header only; Django's ASGI request joins repeated headers with "," (its
#: cookie parser splits on ";"). The broker's own reader joins them with "; ".
HOST_SESSION_NEEDS_ONE_COOKIE_HEADER = {"litestar", "django"}
#: Where the audit trail (INFO on ``oneinbox_asgi``) shows without any logging set up:
#: daphne's command line calls ``logging.basicConfig(level=INFO)``; Litestar's default
#: logging config puts the root logger at INFO.
AUDIT_SHOWN_BY_SERVER = {"daphne"}
AUDIT_SHOWN_BY_FRAMEWORK = {"litestar"}


# -- the fake OneInbox ---------------------------------------------------------------


@pytest.fixture(scope="module")
def oneinbox() -> Iterator[tuple[EmulatorAPI, str]]:
    """The emulator's API over uvicorn on loopback, shared by the module's servers."""
    api = EmulatorAPI(api_keys=[API_KEY])
    api.registry.agents.add(AGENT_ID)
    with serve(api) as url:
        yield api, url


@dataclass(frozen=True)
class TLS:
    certfile: Path
    keyfile: Path
    context: ssl.SSLContext  # a client context that trusts the throwaway CA


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    """A throwaway CA (``trustme``) and a certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return TLS(certfile, keyfile, context)


# -- server processes ----------------------------------------------------------------


@dataclass
class Server:
    """One server process serving ``tests.frameworks.served:app``.

    ``url`` is its plain HTTP/1.1 address, ``tls_url`` its HTTPS one (ALPN ``h2``).
    """

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    report: Path
    context: ssl.SSLContext
    url: str | None = None
    tls_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait (bounded) until it answers the host's home page."""
        began = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches its workers
            )
        home = (self.url or self.tls_url or "") + "/"
        deadline = began + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited at startup:\n{self.output()}")
            try:
                if httpx.get(home, timeout=1.0, verify=self.context).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} not answering in {STARTUP_SECONDS} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator sends it; the server must be gone within the bound.

        (What is left of its process group, such as multiprocessing's resource tracker
        that lingers a second or two after hypercorn, is killed at teardown.)"""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} still running {SHUTDOWN_SECONDS} s after SIGTERM:\n{self.output()}"
            ) from None

    def kill(self) -> None:
        """The whole process group (a server's workers too), and reap the server."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(SHUTDOWN_SECONDS)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def closes(self) -> list[str]:
        """One line per ``OneInboxMiddleware.aclose()`` that completed in the server."""
        return self.report.read_text().splitlines() if self.report.exists() else []


def server_command(server: str, port: int, tls_port: int, tls: TLS) -> list[str]:
    target = "tests.frameworks.served:app"
    python = [sys.executable, "-m"]
    certfile, keyfile = str(tls.certfile), str(tls.keyfile)
    if server == "uvicorn":
        return [*python, "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-access-log"]  # fmt: skip
    if server == "hypercorn":  # plain HTTP/1.1 and HTTP/2 over TLS from one process
        return [*python, "hypercorn", target, "--insecure-bind", f"127.0.0.1:{port}",
                "--bind", f"127.0.0.1:{tls_port}", "--certfile", certfile,
                "--keyfile", keyfile]  # fmt: skip
    if server == "daphne":
        return [*python, "daphne", "-b", "127.0.0.1", "-p", str(port), target]
    if server == "granian":
        return [*python, "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--no-ws", target]  # fmt: skip
    if server in ("runserver", "runserver-daphne"):  # Django's, settings from the env
        return [*python, "django", "runserver", f"127.0.0.1:{port}", "--noreload"]
    if server == "granian-tls":  # granian binds one address: HTTP/2 over TLS here
        return [*python, "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(tls_port), "--no-ws", "--ssl-certificate", certfile,
                "--ssl-keyfile", keyfile, target]  # fmt: skip
    raise AssertionError(server)


@pytest.fixture
def start_server(
    tmp_path: Path, oneinbox: tuple[EmulatorAPI, str], tls: TLS
) -> Iterator[Callable[..., Server]]:
    """``start_server(server, example, *extra_args, **env)``: a started Server, killed after
    if the test did not stop it."""
    started: list[Server] = []

    def start(server: str, example: str, *extra_args: str, **env: str) -> Server:
        port, tls_port = free_port(), free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}
        environment.update(
            PYTHONPATH=str(ROOT),
            SESSION_SECRET="matrix-session-secret-0123456789abcdef",
            SERVED_EXAMPLE=example,
            SERVED_REPORT=str(tmp_path / f"{server}.closed"),
        )
        environment.update(
            ONEINBOX_API_KEY=API_KEY,
            ONEINBOX_AGENT_ID=AGENT_ID,
            ONEINBOX_BASE_URL=oneinbox[1],
            **env,
        )
        instance = Server(
            name=server,
            command=[*server_command(server, port, tls_port, tls), *extra_args],
            env=environment,
            log=tmp_path / f"{server}.log",
            report=tmp_path / f"{server}.closed",
            context=tls.context,
            url=None if server == "granian-tls" else f"http://127.0.0.1:{port}",
            tls_url=(
                f"https://127.0.0.1:{tls_port}" if server in ("hypercorn", "granian-tls") else None
            ),
        )
        started.append(instance)
        instance.start()
        return instance

    yield start
    for instance in started:
        instance.kill()


# -- the checks ----------------------------------------------------------------------


def sign_in(client: httpx.Client, name: str) -> None:
    """Through the example's own form (with Django's CSRF token), as a browser would."""
    first = client.get("/")
    assert first.status_code == 200, first.text
    assert "name=name" in first.text  # the sign-in form: the host's page, untouched
    form = {"name": name}
    if token := CSRF.search(first.text):
        form["csrfmiddlewaretoken"] = token.group(1)
    origin = str(client.base_url).rstrip("/")
    # A browser's same-origin form post carries these; Django's CSRF check wants the
    # Referer over HTTPS.
    headers = {"origin": origin, "referer": origin + "/"}
    signed_in = client.post("/login", data=form, headers=headers)
    assert signed_in.status_code == 303, signed_in.text
    page = client.get("/")
    assert f"Hello, {name}" in page.text and WIDGET_TAG in page.text, page.text


def assert_visitor_refused(client: httpx.Client, api: EmulatorAPI) -> None:
    before = len(api.received)
    response = client.post(START, json={})
    assert response.status_code == 401, response.text
    assert error_code(response) == "unauthorized"
    assert len(api.received) == before, "a visitor's start-call reached OneInbox"


def assert_call_for(
    client: httpx.Client, api: EmulatorAPI, name: str, *, headers: Sequence[tuple[str, str]] = ()
) -> None:
    """Start-call: 201, and OneInbox's call carries the user's name; then end-call hangs
    it up (the default cap is one open call per caller)."""
    response = client.post(START, json={}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    started = response.json()
    call = api.registry.get(started["call_id"])
    assert call is not None, "OneInbox has no such call"
    assert call.variables == {"customer_name": name}
    ended = client.post(END, json={"end_token": started["end_token"]}, headers=headers)
    assert ended.status_code == 200 and ended.json() == {"ended": True}, ended.text


def assert_widget_cached(client: httpx.Client) -> None:
    widget = client.get(WIDGET)
    assert widget.status_code == 200
    assert widget.headers["content-type"].startswith("text/javascript")
    assert "public" in widget.headers["cache-control"]
    assert "set-cookie" not in widget.headers  # publicly cacheable: never a cookie on it
    etag = widget.headers["etag"]
    again = client.get(WIDGET, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag


def prove(
    new_client: Callable[[], httpx.Client],
    api: EmulatorAPI,
    name: str,
    http_version: str,
    *,
    sign_in_with: Callable[[], httpx.Client] | None = None,
) -> httpx.Cookies:
    """The contract against one running server; returns the signed-in user's cookies.

    ``sign_in_with``: another client to sign in through (its cookies are then used).
    """
    with new_client() as visitor:
        assert_visitor_refused(visitor, api)
    with new_client() as user:
        if sign_in_with is None:
            sign_in(user, name)
        else:
            with sign_in_with() as other:
                sign_in(other, name)
                user.cookies = other.cookies
        assert_call_for(user, api, name)
        assert_widget_cached(user)
        assert user.get(WIDGET).http_version == http_version
        return user.cookies


def split_cookie_headers(cookies: httpx.Cookies) -> list[tuple[str, str]]:
    """A decoy first, then each of the user's cookies in a ``cookie`` header of its own,
    as browsers send them over HTTP/2 (RFC 9113 section 8.2.3)."""
    return [("cookie", "theme=dark")] + [("cookie", f"{k}={v}") for k, v in cookies.items()]


# -- the matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("framework", list(EXAMPLES))
def test_the_one_line_under_every_server(
    framework: str,
    server: str,
    start_server: Callable[..., Server],
    oneinbox: tuple[EmulatorAPI, str],
    tls: TLS,
) -> None:
    api = oneinbox[0]
    running = start_server(server, EXAMPLES[framework])
    plain_url, tls_url = running.url, running.tls_url

    if plain_url is not None:

        def plain() -> httpx.Client:
            return httpx.Client(base_url=plain_url, timeout=REQUEST_SECONDS)

        prove(plain, api, f"Ada {framework} {server}", "HTTP/1.1")

    if tls_url is not None:

        def h2() -> httpx.Client:
            return httpx.Client(
                base_url=tls_url, http2=True, verify=tls.context, timeout=REQUEST_SECONDS
            )

        # hypercorn's HTTP/2 drops the connection (KeyError in hypercorn/protocol/h2.py)
        # when a request's END_STREAM frame comes after the app has answered. httpx sends
        # it as a frame of its own, and Falcon answers its sign-in form as soon as it has
        # Content-Length bytes: sign in over hypercorn's HTTP/1.1 port, the rest over h2.
        # (The broker reads every body to its end, so its routes are not affected.)
        via_h1 = plain if (framework, server) == ("falcon", "hypercorn") else None
        name = f"Ada {framework} {server} h2"
        cookies = prove(h2, api, name, "HTTP/2", sign_in_with=via_h1)
        with h2() as split:
            headers = split_cookie_headers(cookies)
            host_page = split.get("/", headers=headers).text
            host_lost = framework in HOST_SESSION_NEEDS_ONE_COOKIE_HEADER
            assert (f"Hello, {name}" in host_page) != (host_lost and server in SPLITS_COOKIES)
            if framework in FIRST_COOKIE_HEADER_ONLY and server in SPLITS_COOKIES:
                refused = split.post(START, json={}, headers=headers)
                assert refused.status_code == 401, refused.text
            else:
                assert_call_for(split, api, name, headers=headers)

    running.stop()
    closes = running.closes()
    if server in NO_LIFESPAN:
        assert closes == [], "the server ran the lifespan after all: update docs/frameworks.md"
    else:
        assert len(closes) == 1 and closes[0].endswith("closed=True"), closes
    output = running.output()
    assert "Traceback" not in output, output
    audit_shown = server in AUDIT_SHOWN_BY_SERVER or framework in AUDIT_SHOWN_BY_FRAMEWORK
    assert ("call started outcome=started" in output) == audit_shown, output


# -- the checks can fail ---------------------------------------------------------------


def test_the_checks_fail_on_a_broken_setup(
    start_server: Callable[..., Server], oneinbox: tuple[EmulatorAPI, str]
) -> None:
    """The Starlette example with the usual mistake (its session inside ours): the host's
    own sign-in still works, and the matrix's check of the 201 fails."""
    running = start_server("uvicorn", EXAMPLES["starlette"], SERVED_BROKEN="session-inside")

    def plain() -> httpx.Client:
        return httpx.Client(base_url=str(running.url), timeout=REQUEST_SECONDS)

    with pytest.raises(AssertionError, match="unauthorized"):
        prove(plain, oneinbox[0], "Ada broken", "HTTP/1.1")
    running.stop()


def test_the_close_check_fails_without_the_lifespan(
    start_server: Callable[..., Server], oneinbox: tuple[EmulatorAPI, str]
) -> None:
    """uvicorn with ``--lifespan off``: calls work, but the probe reports no close, so the
    matrix's close check would fail (as it is expected to under daphne)."""
    running = start_server("uvicorn", EXAMPLES["starlette"], "--lifespan", "off")

    def plain() -> httpx.Client:
        return httpx.Client(base_url=str(running.url), timeout=REQUEST_SECONDS)

    prove(plain, oneinbox[0], "Ada no lifespan", "HTTP/1.1")
    running.stop()
    assert running.closes() == []


# -- Django's runserver --------------------------------------------------------------


def runserver_settings(directory: Path, *, daphne: bool) -> str:
    """A settings module for the Django example, with or without daphne's runserver."""
    module = "runserver_daphne_settings" if daphne else "runserver_settings"
    (directory / f"{module}.py").write_text(
        f"""
SECRET_KEY = "runserver-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = {["daphne"] if daphne else []!r}
ROOT_URLCONF = "examples.django_app"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
ASGI_APPLICATION = "examples.django_app.application"
"""
    )
    return module


def test_django_runserver_serves_no_widget(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """``manage.py runserver`` is WSGI: ``asgi.py`` never runs, the broker's paths are 404s."""
    running = start_server(
        "runserver",
        "unused",
        DJANGO_SETTINGS_MODULE=runserver_settings(tmp_path, daphne=False),
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
    )
    with httpx.Client(base_url=str(running.url), timeout=REQUEST_SECONDS) as client:
        assert client.get(WIDGET).status_code == 404
        assert client.post(START, json={}).status_code == 404
    running.stop()


def test_django_runserver_with_daphne_serves_the_asgi_app(
    start_server: Callable[..., Server], tmp_path: Path, oneinbox: tuple[EmulatorAPI, str]
) -> None:
    """With ``"daphne"`` in ``INSTALLED_APPS``, runserver serves ``ASGI_APPLICATION``."""
    running = start_server(
        "runserver-daphne",
        "unused",
        DJANGO_SETTINGS_MODULE=runserver_settings(tmp_path, daphne=True),
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
    )

    def plain() -> httpx.Client:
        return httpx.Client(base_url=str(running.url), timeout=REQUEST_SECONDS)

    prove(plain, oneinbox[0], "Ada runserver", "HTTP/1.1")
    running.stop()


# -- the audit trail, as the README says to show it ------------------------------------


def readme_logging_lines() -> str:
    """The first ``python`` block after the README's audit trail heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Seeing the audit trail") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's audit trail section has no python block"
    return block.group(1)


def test_the_readme_lines_show_the_audit_trail_under_uvicorn(
    start_server: Callable[..., Server], tmp_path: Path, oneinbox: tuple[EmulatorAPI, str]
) -> None:
    prelude = tmp_path / "logging_lines.py"
    prelude.write_text(readme_logging_lines())
    running = start_server("uvicorn", EXAMPLES["starlette"], SERVED_PRELUDE=str(prelude))

    def plain() -> httpx.Client:
        return httpx.Client(base_url=str(running.url), timeout=REQUEST_SECONDS)

    prove(plain, oneinbox[0], "Ada audited", "HTTP/1.1")
    running.stop()
    output = running.output()
    for line in ("call denied outcome=unauthorized", "call started outcome=started",
                 "call ended outcome=ended"):  # fmt: skip
        assert line in output, output
    assert API_KEY not in output


# -- refusals over HTTP/2 --------------------------------------------------------------


@pytest.mark.parametrize("server", ["hypercorn", "granian-tls"])
def test_refusals_before_the_body_keep_the_http2_connection(
    server: str, start_server: Callable[..., Server], tls: TLS
) -> None:
    """415, 403 ``cross_site`` and 405 are answered before the body is read; over HTTP/2 the
    connection (every request a page has in flight on it) must survive them."""
    running = start_server(server, EXAMPLES["starlette"])
    statuses: list[int | str] = []
    with httpx.Client(
        base_url=str(running.tls_url), http2=True, verify=tls.context, timeout=REQUEST_SECONDS
    ) as client:
        for _ in range(20):
            for method, headers in (
                ("POST", {"content-type": "text/plain"}),
                ("POST", {"content-type": "application/json", "sec-fetch-site": "cross-site"}),
                ("PUT", {"content-type": "application/json"}),
            ):
                try:
                    response = client.request(method, START, content=b"{}", headers=headers)
                    statuses.append(response.status_code)
                except httpx.TransportError as error:
                    statuses.append(type(error).__name__)
    running.stop()
    assert statuses == [415, 403, 405] * 20, statuses
