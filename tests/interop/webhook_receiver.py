"""A webhook receiver for tests/api/webhooks_interop.rs: verifies every delivery with the
Standard Webhooks reference library (PyPI `standardwebhooks`), answers 204 if it verifies
and 400 otherwise, and prints one JSON line per request to stdout. The first line is the
port it listens on. Usage: webhook_receiver.py SECRET [SECRET...] (whsec_…); a delivery
verified by any of them passes, and `verified_by` says which."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

hooks = [Webhook(s) for s in sys.argv[1:]]
printing = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified_by = []
        payload = None
        for hook in hooks:
            try:
                payload = hook.verify(body, headers)
                verified_by.append(True)
            except WebhookVerificationError:
                verified_by.append(False)
            except Exception as e:  # a library error is a failed check, reported
                print(repr(e), file=sys.stderr, flush=True)
                verified_by.append(False)
        line = {
            "id": headers.get("webhook-id"),
            "type": payload.get("type") if isinstance(payload, dict) else None,
            "verified_by": verified_by,
        }
        with printing:
            print(json.dumps(line), flush=True)
        self.send_response(204 if any(verified_by) else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
