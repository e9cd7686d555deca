"""Audit collector for the docker-compose demo (DEMO ONLY: no auth, no storage).

Accepts the audit-log HTTP sink's POSTs (NDJSON batches) and prints each
event on its own line to stdout, so `docker compose logs -f collector` shows
them. Answers 200 once a batch is printed; anything it cannot read gets a 4xx,
which the sink retries rather than counting as delivered.

    python collector.py [--host 127.0.0.1] [--port 8082]

Port 0 picks a free port. The first line printed is `listening on HOST:PORT`.
"""

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRINT = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.answer(411)
            return
        body = self.rfile.read(int(length))
        events = [l for l in body.decode("utf-8", "replace").splitlines() if l.strip()]
        # Envoy's workers post at the same time: one write per batch, under a
        # lock, so no two events share a line.
        with PRINT:
            sys.stdout.write("".join(e + "\n" for e in events))
            sys.stdout.flush()
        self.answer(200)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_request(self, code="-", size="-"):
        # Only the events go to stdout; refused requests are logged to stderr.
        if not str(code).startswith("2"):
            super().log_request(code, size)

    def log_message(self, format, *args):
        sys.stderr.write("collector: " + (format % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
