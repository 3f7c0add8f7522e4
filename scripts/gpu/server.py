#!/usr/bin/env python3
"""A CUDA inference server for snaprun's GPU tests and benchmark.

    server.py --size 1b|8b [--port 0] [--ready-file F] [--seed N]

Builds a Llama-shaped model with random bf16 weights on the GPU (model.py),
generates a few tokens to warm up, then serves on 127.0.0.1:

    GET  /health    {"ok", "pid", "requests", "model", "load_seconds", "gpu"}
    POST /generate  {"tokens": [ids], "n": N}  ->  {"tokens": [N ids], "seconds"}
                    (no body: the fixed prompt, N = 16)

Once warm it writes its port to --ready-file (write, then rename). HTTP/1.0
with one request per connection, so no connection is open between requests
(snaprun refuses open TCP connections at checkpoint). Start it with stdin
from /dev/null and stdout/stderr to a file: a terminal or a pipe to another
process cannot be checkpointed.
"""

import argparse
import json
import os
import sys
import threading
import time

# Deterministic cuBLAS, so that the same process gives the same tokens.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as gpumodel  # noqa: E402

STATE = {"requests": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/health":
            return self._reply(404, {"error": "no such path"})
        self._reply(200, {
            "ok": True,
            "pid": os.getpid(),
            "requests": STATE["requests"],
            "model": STATE["model"],
            "load_seconds": STATE["load_seconds"],
            "gpu": STATE["gpu"],
        })

    def do_POST(self):
        if self.path != "/generate":
            return self._reply(404, {"error": "no such path"})
        n = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(n) or b"{}")
        tokens = req.get("tokens") or gpumodel.PROMPT
        count = int(req.get("n", 16))
        with LOCK:
            t0 = time.monotonic()
            out = gpumodel.generate(STATE["m"], tokens, count)
            secs = time.monotonic() - t0
            STATE["requests"] += 1
        self._reply(200, {"tokens": out, "seconds": secs})

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1b", choices=sorted(gpumodel.SIZES))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--backend", default="auto", choices=["auto", "transformers", "plain"])
    args = ap.parse_args()

    t0 = time.monotonic()
    torch.use_deterministic_algorithms(True)
    m, info = gpumodel.build(args.size, "cuda", args.seed, args.backend)
    gpumodel.generate(m, gpumodel.PROMPT, 4)
    STATE.update(
        m=m,
        model=gpumodel.describe(info),
        load_seconds=time.monotonic() - t0,
        gpu=torch.cuda.get_device_name(0),
    )
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    print(json.dumps({"event": "ready", "port": port, "pid": os.getpid(),
                      "model": STATE["model"], "load_seconds": STATE["load_seconds"]}),
          flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.ready_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
