"""Litestar with a "Talk to AI" button.  Run: ``uvicorn examples.litestar_app:app``

The one line is ``plugins=[OneInboxPlugin(...)]``. Litestar runs app-level middleware
only for requests that matched one of its routes, so the plugin registers the broker's
routes as Litestar routes; Litestar's session middleware then runs before the broker.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import Body
from litestar.response import Redirect

from oneinbox_asgi.integrations.litestar import OneInboxPlugin

from ._shared import authorize, new_user, oneinbox_connection, page, variables

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@get("/", media_type=MediaType.HTML)
async def home(request: Request[Any, Any, Any]) -> str:
    user = request.session.get("user")
    return page("Litestar", user["name"] if user else None)


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any], data: Form) -> Redirect:
    user = new_user(data.get("name"))
    if user:
        request.set_session({"user": user})
    return Redirect("/", status_code=303)


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/", status_code=303)


oneinbox = oneinbox_connection()
app = Litestar(
    route_handlers=[home, login, logout],
    middleware=[ServerSideSessionConfig().middleware],
    plugins=[OneInboxPlugin(authorize=authorize, variables=variables, **oneinbox)],
)
