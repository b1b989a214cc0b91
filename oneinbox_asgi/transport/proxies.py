"""Environment proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

httpx honours them by default; the aiohttp transport asks this module so that both
implementations send a request through the same proxy, by httpx's rules: the
scheme's proxy, else ``ALL_PROXY``; a proxy given without a scheme is ``http://``;
``NO_PROXY`` lists hosts that connect directly (``*`` for all, ``example.com`` for it
and its subdomains, ``.example.com`` likewise, an IP address for itself).
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment names for ``url``, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed(parts.hostname or "", proxies.get("no", "")):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if "://" in entry:
            entry = urlsplit(entry).hostname or ""
        entry = entry.strip("[]").lstrip("*").lstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False
