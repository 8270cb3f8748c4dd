"""HTTP/1.x as the analysis sees it in a byte stream: where a request or a response starts."""

from __future__ import annotations

import re
from typing import Final

_REQUEST_LINE: Final = re.compile(rb"^([A-Z]{3,10}) (\S{1,40})")
_STATUS_LINE: Final = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")


def http1_label(data: bytes) -> str | None:
    """"HTTP GET /index.html" or "HTTP 200 response" when ``data`` starts an HTTP/1 message."""
    match = _STATUS_LINE.match(data)
    if match:
        return f"HTTP {match.group(1).decode()} response"
    match = _REQUEST_LINE.match(data)
    if match and (b" HTTP/" in data[:80] or len(data) < 80):
        return f"HTTP {match.group(1).decode()} {match.group(2).decode(errors='replace')}"
    return None
