"""A small Django site for the tests: settings (configured once per process), views, URLs,
and the host app: ``OneInboxMiddleware(get_asgi_application(), ...)`` (``make_app``).

The sessions table lives in a sqlite file in a temporary directory, migrated once.
Each test picks its session engine with ``engine(...)``; Django's ``SessionMiddleware``
reads the engine when the ASGI handler is built, so build the app inside it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path

from oneinbox_asgi import DjangoSessionReader, OneInboxMiddleware

from .support import options

SECRET_KEY = "django-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cache": "django.contrib.sessions.backends.cache",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


def configure() -> None:
    """Configure Django for this process (once) and create the sessions table.

    Call it outside the event loop (Django refuses to migrate inside one): the
    ``django`` fixture in ``conftest.py`` does.
    """
    if settings.configured:
        return
    import django
    from django.core.management import call_command

    directory = tempfile.mkdtemp(prefix="oneinbox-django-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{directory}/db.sqlite3"}
        },
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        SESSION_ENGINE=ENGINES["db"],
        USE_TZ=True,
    )
    django.setup()
    call_command("migrate", "sessions", verbosity=0, interactive=False)


@contextmanager
def engine(name: str, **more: Any) -> Iterator[None]:
    """Use the session engine ``name`` (after ``configure()``: the ``django`` fixture)."""
    assert settings.configured, "use the `django` fixture"
    with override_settings(SESSION_ENGINE=ENGINES[name], **more):
        yield


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"host app at {request.path}")


def log_in(request: HttpRequest) -> JsonResponse:
    request.session["user"] = {"id": request.GET["id"], "name": request.GET["name"]}
    return JsonResponse({"ok": True})


def item(request: HttpRequest, item_id: int) -> HttpResponse:
    return HttpResponse(f"item {item_id}")


def make_app(*, reader: bool = True, **extra: Any) -> OneInboxMiddleware:
    """Django's session lives inside its handler, after we have run, so the broker loads it
    from ``settings.SESSION_ENGINE`` by the session cookie with ``DjangoSessionReader()``
    (``reader``); build it inside ``engine(...)``."""
    if reader:
        extra["session"] = DjangoSessionReader()
    return OneInboxMiddleware(get_asgi_application(), **options(**extra))  # the one line


urlpatterns = [
    path("", home),
    path("login", log_in),
    path("oneinboxer", home),
    path("oneinboxer/<int:item_id>", item),
]
