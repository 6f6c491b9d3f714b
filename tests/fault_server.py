"""A fault-injecting OpenAI-compatible chat endpoint on loopback, for the litellm tests.

``FaultServer`` is a real HTTP server (stdlib, one thread per connection) in a daemon thread. Each
request to ``/v1/chat/completions`` gets one action:

- the next entry of ``script`` while there is one;
- otherwise, with ``fault_rate`` > 0, a seeded fault: the share ``fault_rate`` of requests, split
  evenly over :data:`FAULTS`, decided by a hash of (``salt``, the request body, how many times
  this same body arrived before). The outcome does not depend on the order in which concurrent
  requests arrive, so a faulty run is reproducible; a retried body draws again. Preflight pings
  (``max_tokens`` 1) are always answered;
- otherwise "ok".

Actions: "ok" answers ``reply(body)`` (by default ``ok:<last message>``) after ``delay`` seconds;
"500", "400", "401", "404" answer that status with an OpenAI error that echoes the bearer token
(a careless server); "429" answers with ``Retry-After: 0``; "hang" answers only after the
client gave up; "close" drops the connection; "garbage" answers a well-formed completion whose
text holds no verdict (:data:`GARBAGE`); "stall" (see :meth:`FaultServer.stall`) never
answers until the server closes: a deterministic point at which a test can kill its client.
Every exchange is kept in ``exchanges`` (model, body, action, the text answered with 200 or
None, the Authorization header).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("500", "429", "hang", "close", "garbage")
GARBAGE = "Both responses have merits; I would rather not choose."
HANG_SECONDS = 5.0


@dataclass(frozen=True)
class Exchange:
    model: str
    body: dict[str, Any]
    action: str
    text: str | None  # the completion answered with status 200
    authorization: str  # the request's Authorization header


def echo(body: dict[str, Any]) -> str:
    return "ok:" + body["messages"][-1]["content"]


def body_key(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def is_ping(body: dict[str, Any]) -> bool:
    """The backend's preflight request (``check``): one token."""
    return body.get("max_tokens") == 1


class FaultServer:
    def __init__(self, script: Sequence[str] = (), delay: float = 0.0, *,
                 fault_rate: float = 0.0, salt: str = "",
                 reply: Callable[[dict[str, Any]], str] = echo):
        self.script = list(script)
        self.delay, self.fault_rate, self.salt, self.reply = delay, fault_rate, salt, reply
        self.exchanges: list[Exchange] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._arrivals: Counter[str] = Counter()
        self._answered: Counter[str] = Counter()  # "ok" answers per model, pings aside
        self._stall_after: dict[str, int] = {}
        self.stalled = threading.Event()  # set once a request waits in a stall
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    action = outer._action(body)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer._act(self, action, body)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ state

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [e.body for e in self.exchanges]

    @property
    def hits(self) -> int:
        return len(self.exchanges)

    def work(self, model: str | None = None) -> list[Exchange]:
        """Exchanges other than preflight pings, of ``model`` if given."""
        return [e for e in self.exchanges
                if not is_ping(e.body) and (model is None or e.model == model)]

    def stall(self, model: str, after: int | None) -> None:
        """Leave every request of ``model`` unanswered (action "stall") once ``after`` more of
        its requests were answered "ok"; None lifts the stall for requests to come."""
        with self.lock:
            if after is None:
                self._stall_after.pop(model, None)
            else:
                self._stall_after[model] = self._answered[model] + after

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ answering

    def _action(self, body: dict[str, Any]) -> str:
        action = self._draw(body)
        if action == "ok" and not is_ping(body):
            model = body["model"]
            if self._answered[model] >= self._stall_after.get(model, self._answered[model] + 1):
                return "stall"
            self._answered[model] += 1
        return action

    def _draw(self, body: dict[str, Any]) -> str:
        if self.script:
            return self.script.pop(0)
        if self.fault_rate <= 0 or is_ping(body):
            return "ok"
        key = body_key(body)
        arrival = self._arrivals[key]
        self._arrivals[key] += 1
        digest = hashlib.sha256(f"{self.salt}|{arrival}|{key}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2 ** 64
        if draw >= self.fault_rate:
            return "ok"
        return FAULTS[int(draw / self.fault_rate * len(FAULTS))]

    def _record(self, body: dict[str, Any], action: str, text: str | None,
                authorization: str) -> None:
        with self.lock:
            self.exchanges.append(Exchange(body["model"], body, action, text, authorization))

    def _act(self, handler: BaseHTTPRequestHandler, action: str, body: dict[str, Any]) -> None:
        text = None
        if action == "ok":
            time.sleep(self.delay)
            text = self.reply(body)
        elif action == "garbage":
            text = GARBAGE
        auth = handler.headers.get("Authorization", "")
        self._record(body, action, text, auth)
        if action == "close":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if action in ("hang", "stall"):
            if action == "stall":
                self.stalled.set()
            self.release.wait(None if action == "stall" else HANG_SECONDS)
            handler.close_connection = True
            return
        headers = {}
        if text is not None:
            status = 200
            payload = {
                "id": "chatcmpl-test", "object": "chat.completion", "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        else:
            status = int(action)
            payload = {"error": {"message": f"error {status}; you sent {auth}",
                                 "type": "test_error", "param": None, "code": None}}
            if status == 429:
                headers["Retry-After"] = "0"
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except OSError:
            pass


class FaultServerProcess:
    """A :class:`FaultServer` in a forked child process, so that the server does not share the
    interpreter lock of the client under test (load tests). ``stats()`` is ``(hits,
    max_in_flight)`` so far; ``close()`` stops the child."""

    def __init__(self, **options: Any):
        context = multiprocessing.get_context("fork")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=self._serve, args=(child_conn, options),
                                        daemon=True)
        self._process.start()
        self.api_base: str = self._conn.recv()

    @staticmethod
    def _serve(conn: Any, options: dict[str, Any]) -> None:
        server = FaultServer(**options)
        conn.send(server.api_base)
        while conn.recv() == "stats":
            with server.lock:
                conn.send((server.hits, server.max_in_flight))
        server.close()

    def stats(self) -> tuple[int, int]:
        self._conn.send("stats")
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(10)
