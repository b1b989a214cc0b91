"""Django (in one file) with a "Talk to AI" button.

Run: ``uvicorn examples.django_app:application``

The one line wraps Django's ASGI application. Django loads its session inside its own
handler, after the broker has run, so the broker loads it from the session engine by
the session cookie with ``DjangoSessionReader()``. This example uses the
``signed_cookies`` engine, so it needs no database; ``db`` and ``cache`` work the same.
"""

from __future__ import annotations

import html

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import path
from django.views.decorators.http import require_POST

from oneinbox_asgi import DjangoSessionReader, OneInboxMiddleware

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=session_secret(),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    )


def csrf_input(request: HttpRequest) -> str:
    token = html.escape(get_token(request))
    return f'<input type=hidden name=csrfmiddlewaretoken value="{token}">'


def home(request: HttpRequest) -> HttpResponse:
    user = request.session.get("user")
    name = user["name"] if user else None
    return HttpResponse(page("Django", name, csrf_input=csrf_input(request)))


@require_POST
def login(request: HttpRequest) -> HttpResponseRedirect:
    user = new_user(request.POST.get("name"))
    if user:
        request.session.cycle_key()
        request.session["user"] = user
    return HttpResponseRedirect("/", status=303)


@require_POST
def logout(request: HttpRequest) -> HttpResponseRedirect:
    request.session.flush()
    return HttpResponseRedirect("/", status=303)


urlpatterns = [path("", home), path("login", login), path("logout", logout)]

oneinbox = oneinbox_connection()
application = OneInboxMiddleware(
    get_asgi_application(),
    session=DjangoSessionReader(),
    authorize=authorize,
    variables=variables,
    **oneinbox,
)
