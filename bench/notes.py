"""The notes under the tables: each missed target explained with this run's own numbers.

Nothing here is typed in by hand after a run: every figure comes from the measurements
(the wrk runs' CPU accounting and ``bench.costs``), so the notes cannot drift from the
tables above them.
"""

from __future__ import annotations

from typing import Any

from .report import Row, Section
from .settings import Settings

Cell = dict[str, Any]


def _best(raw: dict[str, Any], variant: str, connections: int) -> Cell | None:
    runs = raw.get("broker", {}).get(variant, {}).get(str(connections))
    return max(runs, key=lambda r: r["rps"]) if runs else None


def _server_us(cell: Cell | None) -> float | None:
    if not cell or "server" not in cell["cpu"] or not cell["requests"]:
        return None
    return float(cell["cpu"]["server"] * cell["duration_s"] / cell["requests"] * 1e6)


def _cost(raw: dict[str, Any], group: str, prefix: str) -> float | None:
    for name, value in raw.get("costs", {}).get(group, {}).items():
        if name.startswith(prefix):
            return float(value)
    return None


def _missed(sections: list[Section]) -> list[Row]:
    return [row for section in sections for row in section.rows if row.passed is False]


def budget(raw: dict[str, Any], settings: Settings) -> list[str]:
    """Where (b)'s CPU per start-call goes, against the raw ceiling's."""
    high = 64 if 64 in settings.concurrency else max(settings.concurrency)
    b_us = _server_us(_best(raw, "oneinbox", high))
    raw_us = _server_us(_best(raw, "raw-ceiling", high))
    client = _cost(raw, "client", "own pooled client")
    httpcore = _cost(raw, "client", "httpx's own transport")
    minimal = _cost(raw, "client", "raw keep-alive")
    logic = _cost(raw, "logic", "broker logic")
    unlimited = _cost(raw, "logic", "the same with the rate limit")
    route = _cost(raw, "logic", "for scale")
    handle = _cost(raw, "logic", "of which")
    if None in (b_us, raw_us, client, minimal, logic):
        return []
    assert b_us and raw_us and client and minimal and logic
    server_side = raw_us - minimal
    rest = b_us - client - logic
    lines = [
        f"- **Where (b)'s time goes.** At c={high} the broker's process spent {b_us:,.0f} µs "
        f"of CPU per start-call; the raw ceiling {raw_us:,.0f} µs. Measured part by part "
        f"(`bench.costs`, CPU µs per call): the upstream client {client:,.0f} (the middleware's "
        f"own pooled client, aiohttp spoken to directly; {httpcore or 0:,.0f} through httpx's "
        f"own transport; the ceiling's minimal client {minimal:,.0f}); the broker's own logic "
        f"{logic:,.0f} (body, cross-site check, authorize and variables hooks, rate limit and "
        f"concurrency slot, answer"
        + (f"; of which the end-call handle {handle:,.0f}" if handle else "")
        + (f" and the two limits {logic - unlimited:,.0f}" if unlimited else "")
        + f"; a bare Starlette JSON route costs {route or 0:,.0f} for scale). The rest, "
        f"≈ {rest:,.0f} µs, is the HTTP server side (uvicorn + httptools reading the request "
        "and writing the answer, the aiohttp connection's I/O, Starlette's outer middleware); "
        f"the ceiling pays ≈ {server_side:,.0f} µs of the same kind.",
    ]
    return lines


def direct_ratio(raw: dict[str, Any], settings: Settings, missed: list[Row]) -> list[str]:
    mid = 16 if 16 in settings.concurrency else max(settings.concurrency)
    if not any(r.measure.startswith(f"broker c={mid}: (b) vs the upstream") for r in missed):
        return []
    direct = _best(raw, "direct", mid)
    b_cell = _best(raw, "oneinbox", mid)
    b_us = _server_us(b_cell)
    ceiling = _best(raw, "raw-ceiling", mid)
    if not direct or not b_cell or not b_us or not ceiling:
        return []
    load_core = sum(v for k, v in direct["cpu"].items() if k != "server")
    needed = 1e6 / (0.35 * direct["rps"])
    client = _cost(raw, "client", "own pooled client")
    minimal = _cost(raw, "client", "raw keep-alive")
    client_ratio = (
        f"{client / minimal:.0f}x the minimal client's CPU; " if client and minimal else ""
    )
    return [
        f"- **c={mid}, (b) vs the upstream called directly (target ≥ 0.35x).** Called "
        f"directly, the fake upstream and wrk saturate their core ({load_core:.2f} cores) at "
        f"{direct['rps']:,.0f} req/s. 0.35x of that needs the broker to spend at most "
        f"{needed:,.0f} µs of CPU per start-call on its own core; it spends {b_us:,.0f} µs "
        f"({b_cell['rps']:,.0f} req/s, {b_cell['rps'] / direct['rps']:.2f}x). Even the raw "
        f"ceiling, no production code, reaches {ceiling['rps'] / direct['rps']:.2f}x here. What "
        "is left is in the budget above: the HTTP server side no broker avoids, aiohttp's "
        f"per-request machinery ({client_ratio}the next step down would be a hand-written "
        "HTTP/1.1 client in the package, which the design rules out), and the broker's own "
        "logic, owned by `calls.py` and `guards/`.",
    ]


def issue_latency(raw: dict[str, Any], settings: Settings, missed: list[Row]) -> list[str]:
    mid = 16 if 16 in settings.concurrency else max(settings.concurrency)
    if not any(r.measure.startswith(f"broker c={mid}: p50 added") for r in missed):
        return []
    direct, b_cell = _best(raw, "direct", mid), _best(raw, "oneinbox", mid)
    if not direct or not b_cell:
        return []
    allowed = direct["p50_ms"] + 1.0
    needed = mid / (allowed / 1000)
    return [
        f"- **c={mid}, p50 added < 1 ms (the issue's wording).** With {mid} requests always in "
        "flight both (a) and (b) are saturated closed loops, so p50 ≈ concurrency / "
        f"throughput (Little's law): (a) {direct['p50_ms']:.2f} ms at {direct['rps']:,.0f} "
        f"req/s, (b) {b_cell['p50_ms']:.2f} ms at {b_cell['rps']:,.0f} req/s. A p50 under "
        f"{allowed:.2f} ms needs ≈ {needed:,.0f} req/s, {needed / direct['rps']:.2f}x the "
        "upstream called directly: more than the 0.5-0.7x a proxy can physically reach on "
        "this pinning (it does the upstream's HTTP work twice). PERFORMANCE.md, the later "
        "word, sets the latency target at c=1 (row above) and a throughput ratio at c=16.",
    ]


def c1_latency(raw: dict[str, Any], missed: list[Row]) -> list[str]:
    if not any(r.measure.startswith("broker c=1: p50 added") for r in missed):
        return []
    b_cell, direct = _best(raw, "oneinbox", 1), _best(raw, "direct", 1)
    us = _server_us(b_cell)
    if not b_cell or not direct or not us:
        return []
    return [
        f"- **c=1, p50 added.** One request at a time, the broker's added latency is its own "
        f"CPU on the critical path plus one more loopback round trip: {us:,.0f} µs of server "
        f"CPU per start-call (the budget above); p50 {b_cell['p50_ms']:.3f} ms vs "
        f"{direct['p50_ms']:.3f} ms direct.",
    ]


def baseline_ratios(raw: dict[str, Any], missed: list[Row]) -> tuple[list[str], list[str]]:
    """A missed 'at least N x that baseline' ratio, in CPU per start-call on the same core."""
    from .broker import LABELS

    lines: list[str] = []
    explained: list[str] = []
    for row in missed:
        head, _, label = row.measure.partition(": (b) vs ")
        key = next((k for k, v in LABELS.items() if v == label), None)
        if not head.startswith("broker c=") or key is None or key == "direct":
            continue
        connections = int(head.removeprefix("broker c="))
        ours, theirs = _best(raw, "oneinbox", connections), _best(raw, key, connections)
        ours_us, theirs_us = _server_us(ours), _server_us(theirs)
        if not ours or not theirs or not ours_us or not theirs_us:
            continue
        factor = float(row.target.split()[1].rstrip("x"))
        explained.append(row.measure)
        lines.append(
            f"- **c={connections}, (b) vs {label} (target {row.target}).** Each runs alone on the "
            f"same core: (b) spent {ours_us:,.0f} µs of CPU per start-call, this baseline "
            f"{theirs_us:,.0f} µs ({theirs['rps']:,.0f} req/s). {factor:g}x its throughput "
            f"needs (b) at ≤ {theirs_us / factor:,.0f} µs per start-call; see the budget above "
            "for where (b)'s time goes."
        )
    return lines, explained


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def passthrough(sections: list[Section], missed: list[Row]) -> tuple[list[str], list[str]]:
    """A pass-through miss over HTTP, against what the in-process rows say it can cost."""
    by_title = {section.title: section.data for section in sections}
    inproc = by_title.get("Pass-through, in-process", {}).get("rounds", {})
    http = by_title.get("Pass-through, over HTTP", {})
    rows = {row.measure: row for section in sections for row in section.rows}
    routes = {"JSON route": "/json", "plain-text route": "/text"}
    lines: list[str] = []
    explained: list[str] = []
    for row in missed:
        kind, _, rest = row.measure.partition(", ")
        label, _, variant = rest.partition(": ")
        path = routes.get(label)
        if variant != "OneInboxMiddleware" or path is None:
            continue
        layer = rows.get(f"{kind}, {label}: a do-nothing middleware (for contrast)")
        text = (
            f"- **{row.measure}: {row.ratio} of bare (target {row.target}).** A middleware "
            f"that does nothing but forward, measured in the same rounds, got "
            f"{layer.ratio if layer else '?'}."
        )
        if kind == "HTTP" and path in inproc and path in http.get("rates", {}):
            by = inproc[path]
            per_request = 1e6 / max(by["bare"])
            added = per_request * (1 / _median_paired(by["oneinbox"], by["bare"]) - 1)
            server = _median(http["cpu_us"][path]["bare"])
            bare_rates = http["rates"][path]["bare"]
            low, high, mid = min(bare_rates), max(bare_rates), _median(bare_rates)
            text += (
                f" In-process, OneInboxMiddleware adds {added:.2f} µs to a {per_request:.1f} µs "
                f"request (layer and prefix check together); over HTTP the bare app spends "
                f"{server:.0f} µs of server CPU per request, so the middleware can account for "
                f"a ratio of {server / (server + added):.3f} at the lowest. The rest is this "
                f"machine: the bare app's own rounds ranged {low:,.0f}-{high:,.0f} req/s "
                f"({(high - low) / mid:.0%} of their median) while nothing else of ours ran on "
                "the machine."
            )
        explained.append(row.measure)
        lines.append(text)
    return lines, explained


def _median_paired(values: list[float], bare: list[float]) -> float:
    return _median([v / b for v, b in zip(values, bare, strict=True)])


def machine(raw: dict[str, Any]) -> list[str]:
    busy = [
        (variant, connections, cell)
        for variant, by in raw.get("broker", {}).items()
        for connections, runs in by.items()
        for cell in runs
        if cell["others_cores_busy"] + cell["stolen_cores"] >= 0.3
    ]
    total = sum(len(runs) for by in raw.get("broker", {}).values() for runs in by.values())
    if not total:
        return []
    worst = max((c["others_cores_busy"] + c["stolen_cores"] for _, _, c in busy), default=0.0)
    idle = [
        cell
        for by in raw.get("broker", {}).values()
        for runs in by.values()
        for cell in runs
        if cell["cpu"].get("server", 1.0) < 0.9
        and sum(v for k, v in cell["cpu"].items() if k != "server") < 0.9
    ]
    return [
        f"- **The machine.** In {len(busy)} of {total} broker runs other work visible from "
        f"here (other users' processes, time the hypervisor says it took) used ≥ 0.3 of a "
        f"core, at worst {worst:.2f} cores. In {len(idle)} runs neither core was saturated "
        "by our processes although the server had work queued: the limit was outside this "
        "machine's view (the host's other guests slowing our cores down; rounds of the same "
        "variant differ by up to a third). Each variant's best round is reported, rounds "
        "are interleaved so that such spells hit all variants alike, and the CPU time per "
        "request, which they move least, is in every table.",
    ]


def render(sections: list[Section], raw: dict[str, Any], settings: Settings) -> str:
    missed = _missed(sections)
    lines = ["", "## Notes", ""]
    if settings.smoke:
        lines.append("Smoke run: the numbers only show that every part still runs.")
        return "\n".join(lines) + "\n"
    mid = 16 if 16 in settings.concurrency else max(settings.concurrency)
    lines += budget(raw, settings)
    explained: list[str] = []
    for note, prefix in (
        (c1_latency(raw, missed), "broker c=1: p50 added"),
        (issue_latency(raw, settings, missed), f"broker c={mid}: p50 added"),
        (direct_ratio(raw, settings, missed), f"broker c={mid}: (b) vs the upstream"),
    ):
        if note:
            lines += note
            explained.append(prefix)
    for notes, rows in (baseline_ratios(raw, missed), passthrough(sections, missed)):
        lines += notes
        explained += rows
    lines += machine(raw)
    others = [r for r in missed if not r.measure.startswith(tuple(explained))]
    lines += [f"- **Missed: {r.measure}** ({r.value}; target {r.target})." for r in others]
    if not missed:
        lines.append("- Every target with a verdict was met in this run.")
    return "\n".join(lines) + "\n"
