"""One execution environment of the simulated provider for tests: serves requests one at a time
on an inherited listening socket, with both instances loaded, as Lambda would run them.

Powertools' resolver keeps the current event in a class attribute, so a process can only serve
one request at a time; concurrency comes from several of these processes on one socket.
Usage: python provider_worker.py <listening socket fd> <processes>; the first process imports
everything once, then forks the others (no connection is open yet: pools start on first use).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.provider import DEFAULT, FALLBACK, LambdaContext, api_event, load_provider

INSTANCES = {name: load_provider(name) for name in (DEFAULT, FALLBACK)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else None
        module = INSTANCES.get(parts[1]) if len(parts) > 1 else None
        if module is None:
            status, payload = 404, json.dumps({"error": "no_such_route"})
        else:
            event = api_event(
                self.command,
                url.path,
                body,
                headers={k.lower(): v for k, v in self.headers.items()},
                query=dict(parse_qsl(url.query)),
            )
            response = module.handler(event, LambdaContext())
            status, payload = response["statusCode"], response.get("body") or ""
        data = payload.encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a simulated timeout)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, *args: Any) -> None:
        pass


class InheritedSocketServer(HTTPServer):
    def __init__(self, fd: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.socket = socket.socket(fileno=fd)


def main() -> None:
    fd, processes = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    else:
        print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    InheritedSocketServer(fd).serve_forever()


if __name__ == "__main__":
    main()
