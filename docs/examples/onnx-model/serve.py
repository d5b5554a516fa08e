"""A model server for ModelFleet's process runtime: serves the ONNX model at $MODEL_PATH (the
artifact the agent fetched and checked) with onnxruntime, over HTTP on $HOST:$PORT.

  GET  /health     200 {"status": "ready"} once the model is loaded
  POST /v1/infer   {"inputs": [[4 numbers], ...]} -> {"outputs": [[3 probabilities], ...], ...}
                   400 {"error": {"field": "inputs", "message": ...}} for anything else

Only the standard library and onnxruntime (with numpy); one thread per request.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy
import onnxruntime

MODEL_PATH = os.environ.get("MODEL_PATH") or (sys.argv[1] if len(sys.argv) > 1 else None)
if not MODEL_PATH:
    sys.exit("MODEL_PATH is not set: the model's artifact must be a file:// or http(s):// URI the agent can fetch")
SESSION = onnxruntime.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])
INPUT = SESSION.get_inputs()[0]
WIDTH = INPUT.shape[1]
MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status, message):
        self.answer(status, {"error": {"field": "inputs", "message": message}})

    def do_GET(self):
        if self.path == "/health":
            self.answer(200, {"status": "ready"})
        else:
            self.answer(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        if self.path != "/v1/infer":
            return self.answer(404, {"error": {"message": f"no route {self.path}"}})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.refuse(413, f"the body is over {MAX_BODY} bytes")
        try:
            inputs = json.loads(self.rfile.read(length) or b"null")["inputs"]
            batch = numpy.asarray(inputs, dtype=numpy.float32)
        except (ValueError, TypeError, KeyError):
            return self.refuse(400, f"a JSON object with inputs: a list of rows of {WIDTH} numbers")
        if batch.ndim != 2 or batch.shape[1] != WIDTH or batch.shape[0] == 0:
            return self.refuse(400, f"must be a non-empty list of rows of {WIDTH} numbers")
        (probabilities,) = SESSION.run(None, {INPUT.name: batch})
        self.answer(200, {
            "instance_id": os.environ.get("INSTANCE_ID"),
            "model": os.environ.get("MODEL_NAME"),
            "version": os.environ.get("MODEL_VERSION"),
            "outputs": [[round(float(p), 6) for p in row] for row in probabilities],
        })

    def log_message(self, format, *args):  # one line per request on stdout: the instance's logs
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


if __name__ == "__main__":
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])
    print(f"serving {MODEL_PATH} on {host}:{port}", flush=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()
