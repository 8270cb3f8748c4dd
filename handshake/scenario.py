"""Scenarios: a network, a server and the variants to run, from a TOML file or from flags.

Both go through one mapping, so a file and the command line mean the same thing:

    [network]                # netem units, as on the command line
    rtt = "100ms"            # or delay = "50ms" (one way)
    jitter = "5ms"
    jitter_distribution = "normal"
    jitter_reorders = false  # true: netem's own jitter, which reorders packets
    loss = "1%"
    rate = "10mbit"
    reorder = "0%"
    duplicate = "0%"
    seed = 1

    [server]
    key_type = "p256"        # or "rsa2048"
    intermediates = 1
    hrr = false              # accept only P-256: a client leading with X25519 gets a HelloRetryRequest
    retry = false            # QUIC: demand address validation
    accept_early_data = true
    response_size = "64B"    # the HTTP answer's body
    time = "0ms"             # server time: each answer leaves this long after its request (e.g. "250ms")

    [client]
    cold = false             # no warm-up: no ticket, no TFO cookie
    drop = []                # e.g. ["first-syn"]
    http = "2"               # or "1.1": what ALPN offers over TLS/TCP
    post = "200B"            # the request is a POST with this body (absent: a GET)
    split_writes = false     # its header section and body in two writes, Nagle on (no TCP_NODELAY)
    nodelay = true           # TCP_NODELAY on the client (default: true, false with split_writes)

    variants = ["tls13", "tfo-tls13"]   # top level; all when absent

A bad file gets one line naming the file, the line and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handshake.errors import UsageError
from handshake.net.drops import check_selectors
from handshake.net.link import LinkConfig
from handshake.page import MAX_OBJECT_BYTES, Page, parse_page
from handshake.endpoints.http1 import MAX_UPLOAD_BYTES, Upload
from handshake.runner import RunOptions
from handshake.units import parse_duration, parse_percent, parse_rate, parse_size
from handshake.variants import Variant, select

KEY_TYPES = ("p256", "rsa2048")
HTTP_VERSIONS = ("1.1", "2")
MAX_INTERMEDIATES = 32
MAX_SERVER_TIME_S = 30.0
"""Longest server time: aioquic closes a QUIC connection idle for 60 s (its default idle timeout),
and a request held that long is a timeout, not a slow origin."""

_SECTIONS: dict[str, set[str]] = {
    "network": {
        "rtt", "delay", "jitter", "jitter_distribution", "jitter_reorders", "loss", "rate", "reorder", "duplicate", "seed",
    },
    "server": {"key_type", "intermediates", "hrr", "retry", "accept_early_data", "response_size", "time"},
    "client": {"cold", "drop", "http", "post", "split_writes", "nodelay"},
    "page": {"objects", "sizes"},
}
_TOP_LEVEL = {"variants", "name", "description", *_SECTIONS}


@dataclass(frozen=True)
class Scenario:
    link: LinkConfig
    options: RunOptions
    variants: list[Variant]
    name: str | None = None
    description: str | None = None


class _Locator:
    """Finds the line of a field in the TOML text, for error messages (tomllib keeps no positions)."""

    def __init__(self, origin: str, text: str | None) -> None:
        self.origin = origin
        self.lines = text.splitlines() if text is not None else None

    def prefix(self, section: str | None, key: str) -> str:
        """ "FILE:LINE: [section] " for a file; nothing for the command line, whose flags name themselves."""
        if self.lines is None:
            return ""
        return f"{self.where(section, key)}: " + (f"[{section}] " if section else "")

    def where(self, section: str | None, key: str) -> str:
        if self.lines is None:
            return self.origin
        current = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                current = stripped.strip("[]").strip()
                if section is None and current == key:
                    return f"{self.origin}:{number}"  # a whole table named at the top level
            elif current == section and stripped.split("=")[0].strip() == key:
                return f"{self.origin}:{number}"
        return self.origin


class _Section:
    """One table of the mapping; each field is converted under a message naming where it stands."""

    def __init__(self, locate: _Locator, name: str, values: Any) -> None:
        if not isinstance(values, dict):
            raise UsageError(f"{locate.prefix(None, name)}[{name}] must be a table")
        for key in values:
            if key not in _SECTIONS[name]:
                expected = ", ".join(sorted(_SECTIONS[name]))
                raise UsageError(f"{locate.prefix(name, key)}unknown field {key!r} (expected {expected})")
        self.locate, self.name, self.values = locate, name, values

    def get(self, key: str, convert, default: Any) -> Any:
        if key not in self.values:
            return default
        try:
            return convert(self.values[key], key)
        except UsageError as error:
            raise UsageError(f"{self.locate.prefix(self.name, key)}{error}") from None

    def fail(self, error: UsageError) -> UsageError:
        """An error between fields of this table: named by the table, not a line."""
        if self.locate.lines is None:
            return error
        return UsageError(f"{self.locate.origin}: [{self.name}] {error}")


def _text(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{key} must be a string such as \"100ms\", not {value!r}")
    return str(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{key} must be true or false, not {value!r}")
    return value


def _whole(value: Any, key: str, low: int = 0, high: int = 2**63) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _parsed(parse):
    return lambda value, key: parse(_text(value, key), key)


def _http(value: Any, key: str) -> str:
    text = _text(value, key)
    if text not in HTTP_VERSIONS:
        raise UsageError(f"{key} {text!r} is not one of " + ", ".join(HTTP_VERSIONS))
    return text


def _key_type(value: Any, key: str) -> str:
    text = _text(value, key)
    if text not in KEY_TYPES:
        raise UsageError(f"{key} {text!r} is not one of " + ", ".join(KEY_TYPES))
    return text


def _server_time(value: Any, key: str) -> float:
    seconds = parse_duration(_text(value, key), key)
    if seconds > MAX_SERVER_TIME_S:
        raise UsageError(f"{key} {value!r} is over {MAX_SERVER_TIME_S:g}s: a QUIC connection would go idle first")
    return seconds


def _page_objects(value: Any, key: str) -> Page:
    return parse_page(_text(value, key))


def _page_sizes(value: Any, key: str) -> Page:
    if not isinstance(value, list) or not value:
        raise UsageError(f"{key} must be a list of sizes, the HTML's first, such as [\"30KB\", \"20KB\"]")
    return Page(tuple(parse_size(_text(size, key), f"{key} entry", maximum=MAX_OBJECT_BYTES) for size in value))


def _page(section: _Section) -> Page | None:
    """``[page]``: ``objects = "30x20KB"`` (alike), or ``sizes = [...]`` (the HTML's first)."""
    if "objects" in section.values and "sizes" in section.values:
        raise section.fail(UsageError("give objects or sizes, not both"))
    return section.get("objects", _page_objects, None) or section.get("sizes", _page_sizes, None)


def _upload(client: _Section, page: Page | None) -> tuple[Upload | None, bool]:
    """``[client]`` ``post``, ``split_writes`` and ``nodelay``: the request's body, how it is
    written, and whether Nagle's algorithm may hold a write back."""
    size = client.get("post", lambda v, k: parse_size(_text(v, k), k, maximum=MAX_UPLOAD_BYTES), None)
    split = client.get("split_writes", _bool, False)
    nodelay = client.get("nodelay", _bool, not split)
    if split and size is None:
        raise client.fail(UsageError("split_writes writes a request's header section and its body apart: "
                                     "give the body with post (--post SIZE)"))
    if size is not None and page is not None:
        raise client.fail(UsageError("post sends one request; a page is fetched with GETs"))
    if size == 0:
        raise client.fail(UsageError("post needs a body of 1 byte or more"))
    return (None if size is None else Upload(size, split)), nodelay


def _selectors(value: Any, key: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{key} must be a list of selector names, not {value!r}")
    return check_selectors(names)


def _network(net: _Section) -> LinkConfig:
    if "rtt" in net.values and "delay" in net.values:
        raise net.fail(UsageError("give rtt or delay, not both"))
    delay_s = net.get("delay", _parsed(parse_duration), None)
    if delay_s is None:
        delay_s = net.get("rtt", _parsed(parse_duration), 0.1) / 2
    values = dict(
        delay_s=delay_s,
        jitter_s=net.get("jitter", _parsed(parse_duration), 0.0),
        jitter_distribution=net.get("jitter_distribution", _text, "uniform"),
        jitter_reorders=net.get("jitter_reorders", _bool, False),
        loss=net.get("loss", _parsed(parse_percent), 0.0),
        rate_bps=net.get("rate", _parsed(parse_rate), float("inf")),
        reorder=net.get("reorder", _parsed(parse_percent), 0.0),
        duplicate=net.get("duplicate", _parsed(parse_percent), 0.0),
        seed=net.get("seed", _whole, 1),
    )
    try:
        return LinkConfig(**values)
    except UsageError as error:
        raise net.fail(error) from None  # a rule between fields, e.g. reorder needs a delay


def scenario_from_mapping(data: dict[str, Any], origin: str = "command line", text: str | None = None) -> Scenario:
    """Validate a scenario mapping; errors name the origin, the line (for files) and the field."""
    locate = _Locator(origin, text)
    for key in data:
        if key not in _TOP_LEVEL:
            expected = ", ".join(sorted(_TOP_LEVEL))
            raise UsageError(f"{locate.prefix(None, key)}unknown field {key!r} (expected {expected})")
    network = _Section(locate, "network", data.get("network", {}))
    server = _Section(locate, "server", data.get("server", {}))
    client = _Section(locate, "client", data.get("client", {}))
    page = _Section(locate, "page", data.get("page", {}))
    link = _network(network)
    fetched = _page(page)
    upload, nodelay = _upload(client, fetched)
    options = RunOptions(
        key_type=server.get("key_type", _key_type, "p256"),
        intermediates=server.get("intermediates", lambda v, k: _whole(v, k, 0, MAX_INTERMEDIATES), 1),
        hrr=server.get("hrr", _bool, False),
        retry=server.get("retry", _bool, False),
        accept_early_data=server.get("accept_early_data", _bool, True),
        response_bytes=server.get("response_size", _parsed(parse_size), RunOptions.response_bytes),
        server_time_s=server.get("time", _server_time, 0.0),
        cold=client.get("cold", _bool, False),
        drops=client.get("drop", _selectors, ()),
        http=client.get("http", _http, RunOptions.http),
        page=fetched,
        upload=upload,
        nodelay=nodelay,
    )
    names = data.get("variants")
    try:
        if names is not None and not (
            isinstance(names, str) or (isinstance(names, list) and all(isinstance(n, str) for n in names))
        ):
            raise UsageError(f"variants must be a list of names, not {names!r}")
        variants = select(None if names is None else names if isinstance(names, str) else ",".join(names))
    except UsageError as error:
        raise UsageError(f"{locate.prefix(None, 'variants')}{error}") from None
    return Scenario(link, options, variants, data.get("name"), data.get("description"))


def load_scenario_mapping(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML and its text; an unreadable or malformed file is one UsageError line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read scenario {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file."""
    data, text = load_scenario_mapping(path)
    return scenario_from_mapping(data, str(path), text)
