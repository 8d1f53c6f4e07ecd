"""A tiny webhook handler for the local trial: verifies Stream's X-Signature, prints the event.

hookfan POSTs the body Stream signed, with Stream's headers, so this is what a real handler
behind hookfan does. Standard library only.
"""

import hashlib
import hmac
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["STREAM_API_SECRET"].encode()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, self.headers.get("X-Signature", ""))
        event = json.loads(body)
        print(f"handler: {event.get('type')} webhook_id={self.headers.get('X-Webhook-Id')} "
              f"attempt={self.headers.get('X-Webhook-Attempt')} signature={'ok' if signed else 'BAD'}")
        self.send_response(200 if signed else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "3000"))), Handler).serve_forever()
