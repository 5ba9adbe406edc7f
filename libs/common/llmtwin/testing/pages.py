"""A real web server on loopback serving fixed pages and redirects, for link and crawl tests.

    with serve_pages({"/article": html}, redirects={"/away": "http://169.254.169.254/"}) as url:
        ...  # GET url + "/article"
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that stops reading (a size cap doing its job) is not an error here


@contextmanager
def serve_pages(pages: dict[str, bytes], *, redirects: dict[str, str] | None = None,
                default: bytes | None = None) -> Iterator[str]:
    """The server's base URL. Paths in `redirects` answer 302 to their target, paths in `pages` their
    HTML, any other path `default` (404 when there is none)."""
    redirects = redirects or {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            body = pages.get(self.path, default)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
