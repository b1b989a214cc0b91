"""Environment proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

httpx honours them by default; the aiohttp transport asks this module so that both
implementations send a request through the same proxy, by httpx's rules: the
scheme's proxy, else ``ALL_PROXY``; a proxy given without a scheme is ``http://``;
``NO_PROXY`` lists what connects directly, each entry read as httpx reads it: ``*``
for everything, ``example.com`` for it and its subdomains, ``.example.com`` for its
subdomains only, an IP address or ``localhost`` for itself alone, ``host:port`` for
that port only, ``scheme://host`` for that scheme and host alone.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from urllib.parse import SplitResult, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment names for ``url``, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed(parts, proxies.get("no", "")):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _bypassed(url: SplitResult, no_proxy: str) -> bool:
    """Whether an entry of ``no_proxy`` matches ``url``, as httpx's patterns for it would."""
    for entry in no_proxy.split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if entry and _matches(_pattern(entry), url):
            return True
    return False


def _pattern(entry: str) -> SplitResult:
    """The URL pattern httpx makes of one ``NO_PROXY`` entry (``get_environment_proxies``)."""
    if "://" in entry:
        return urlsplit(entry)
    if _is_ip(entry.split("/")[0], ipaddress.IPv4Address):
        return urlsplit(f"all://{entry}")
    if _is_ip(entry.split("/")[0], ipaddress.IPv6Address):
        return urlsplit(f"all://[{entry}]")
    if entry.lower() == "localhost":
        return urlsplit(f"all://{entry}")
    return urlsplit(f"all://*{entry}")


def _matches(pattern: SplitResult, url: SplitResult) -> bool:
    """httpx's ``URLPattern.matches``: scheme unless ``all``, host (``*`` wildcards), port."""
    if pattern.scheme != "all" and pattern.scheme != url.scheme:
        return False
    wanted = pattern.hostname or ""
    host = url.hostname or ""
    if wanted and wanted != "*":
        if wanted.startswith("*."):  # subdomains only
            if not (host.endswith(wanted[1:]) and len(host) > len(wanted) - 1):
                return False
        elif wanted.startswith("*"):  # the domain and its subdomains
            if host != wanted[1:] and not host.endswith("." + wanted[1:]):
                return False
        elif host != wanted:
            return False
    try:
        wanted_port = pattern.port
    except ValueError:
        return False
    if wanted_port is None or wanted_port == _DEFAULT_PORTS.get(pattern.scheme):
        return True
    port = url.port
    return port != _DEFAULT_PORTS.get(url.scheme) and port == wanted_port


def _is_ip(text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True
