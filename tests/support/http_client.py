"""A small keep-alive JSON client over real HTTP, for live tests, simulators and benchmarks."""

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """One HTTP response: status, decoded JSON body (or None), headers, seconds, raw bytes."""

    status: int
    body: Any
    headers: dict[str, str]
    seconds: float
    raw: bytes = b""


class ApiClient:
    """Calls the Quorum API with one bearer key over one persistent connection."""

    def __init__(self, base_url: str, key: str | None = None, timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send a request (JSON `body` or `raw` bytes) and return the decoded reply."""
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {**self._headers, **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = content_type
        for attempt in (1, 2):
            connection = self._connect()
            start = time.perf_counter()
            try:
                connection.request(method, path, body=payload, headers=all_headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - start
            decoded = (
                json.loads(data)
                if data and "json" in (response.getheader("Content-Type") or "")
                else None
            )
            return Reply(response.status, decoded, dict(response.getheaders()), seconds, data)
        raise AssertionError("unreachable")

    def get(self, path: str, **kwargs: Any) -> Reply:
        """GET a path."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        """POST JSON (or `raw=` bytes) to a path."""
        return self.request("POST", path, body, **kwargs)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return self._connection

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
