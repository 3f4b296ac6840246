"""A real SMTP server for the tests (aiosmtpd): accepts every message on 127.0.0.1:PORT
and writes each one to DIR/NNNN.json: the envelope, every header as received, and the
decoded text/plain and text/html parts (written to a temporary name first, then
renamed, so a reader never sees half a message). Prints "ready" once listening; runs
until killed.

    python3 tests/smtp_sink.py PORT DIR
"""

import email
import email.policy
import json
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                parts[part.get_content_type()] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
            "raw": raw.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.folder, f".{n:04}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.folder, f"{n:04}.json"))
        return "250 OK"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
