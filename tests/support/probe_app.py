"""A plain WSGI app that trusts the gateway, as many do: it believes HTTP_REMOTE_USER
(the `Remote-User` header; `Remote_User` is the same variable to a WSGI or FastCGI
server, which is the point), decodes the path (`%2F` is `/` in PATH_INFO) and answers
what it saw as JSON:

- `/data/<name>...`: the user's own data, 200 for <name> and 403 for anyone else;
- anything else: 200; under /admin it says `"area": "admin"` (the app counts on the
  gateway's rules to keep others out).

`effective` is the path as the most lenient backend reads it: decoded, `;` parameters
dropped from each segment, empty and dot segments resolved.

Run as a server: `python probe_app.py http PORT` (wsgiref, threaded) or
`python probe_app.py fastcgi PORT` (flup).
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from socketserver import ThreadingMixIn
from urllib.parse import unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def effective_path(path: str) -> str:
    path = unquote(path).replace("\\", "/")
    segments = [segment.split(";", 1)[0] for segment in path.split("/")]
    return posixpath.normpath("/" + "/".join(segments)).replace("//", "/")


def application(environ, start_response):
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    user = environ.get("HTTP_REMOTE_USER")
    effective = effective_path(path)
    seen = {
        "app": os.environ.get("PROBE_NAME", "probe"),
        "method": environ["REQUEST_METHOD"],
        "user": user,
        "remote_user": environ.get("REMOTE_USER"),
        "groups": environ.get("HTTP_REMOTE_GROUPS"),
        "email": environ.get("HTTP_REMOTE_EMAIL"),
        "cookie": environ.get("HTTP_COOKIE"),
        "path": path,
        "effective": effective,
        "area": "admin" if effective.split("/")[1:2] == ["admin"] else "public",
    }
    status = "200 OK"
    parts = effective.split("/")
    if parts[1:2] == ["data"]:
        owner = parts[2] if len(parts) > 2 else ""
        if not user or user != owner:
            status = "403 Forbidden"
    body = json.dumps(seen).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(kind: str, port: int) -> None:
    if kind == "http":
        server = make_server(
            "127.0.0.1", port, application, _ThreadingServer, handler_class=_QuietHandler
        )
        server.serve_forever()
    else:
        from flup.server.fcgi import WSGIServer as FastCGIServer

        FastCGIServer(application, bindAddress=("127.0.0.1", port), debug=False).run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
