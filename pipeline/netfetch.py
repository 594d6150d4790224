"""HTTP downloads with a total deadline and a size limit.

requests' timeouts bound the connection and each socket read, not the download: a server that
sends one byte per second never lets a read time out, and `iter_content(1 MiB)` waits for a
whole MiB before the caller can look at the clock. Here the body is read with urllib3's
read1() (at most one socket read per call, whatever arrived), and the deadline and the byte
limit are checked after every read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import requests
import urllib3

from .errors import BadInput, StageFailed

CHUNK = 64 << 10


def stream(url: str, *, deadline: float, session: requests.Session | None = None,
           max_bytes: int | None = None, connect_timeout: float = 30.0,
           read_timeout: float = 120.0) -> Iterator[tuple[bytes, int]]:
    """Yield (block, content-length or 0) of the body of `url`; StageFailed when the whole
    download takes longer than `deadline` seconds or the network fails, BadInput for an HTTP
    error or a body larger than `max_bytes`."""
    http = session or requests.Session()
    start = time.monotonic()
    read_timeout = max(0.1, min(read_timeout, deadline))
    try:
        with http.get(url, stream=True, timeout=(min(connect_timeout, deadline),
                                                 read_timeout)) as resp:
            if resp.status_code >= 400:
                raise BadInput(f"download {url}: HTTP {resp.status_code} {resp.reason}")
            total = int(resp.headers.get("content-length") or 0)
            if max_bytes is not None and total > max_bytes:
                raise BadInput(f"download {url}: {total} bytes is more than the limit of "
                               f"{max_bytes} bytes")
            raw = resp.raw
            reader = getattr(raw, "read1", None)
            done = 0
            while True:
                if time.monotonic() - start > deadline:
                    raise StageFailed(f"download {url}: gave up after {deadline:.0f}s "
                                      f"({done} bytes received)")
                block = (reader(CHUNK, decode_content=True) if reader is not None
                         else raw.read(CHUNK, decode_content=True))
                if not block:
                    break
                done += len(block)
                if max_bytes is not None and done > max_bytes:
                    raise BadInput(f"download {url}: more than the limit of {max_bytes} bytes")
                yield block, total
            if time.monotonic() - start > deadline:
                raise StageFailed(f"download {url}: gave up after {deadline:.0f}s")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # raw reads raise urllib3's own errors (ReadTimeoutError, ProtocolError), not requests'
        raise StageFailed(f"download {url} failed: {exc}") from None
