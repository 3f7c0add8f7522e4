"""The example inference server: all-MiniLM-L6-v2 sentence embeddings over
HTTP, in plain numpy.

    POST /embed   {"texts": ["...", ...]}  ->  {"embeddings": [[...]], "count": N}
    GET  /health                           ->  {"ok": true, "requests": N, "heartbeats": H,
                                                "pid": PID, "threads": T}

count / requests: how many /embed requests this process has answered
(including the one being answered); it goes on counting across a
checkpoint/restore, which is how a restored process is told from a fresh
one. heartbeats: ticks of a background thread (every 20 ms), which shows
that the process's other threads run again after a restore.

A multi-threaded process, as inference servers are: http.server's
ThreadingHTTPServer (a thread per request), a heartbeat thread, and
OpenBLAS's thread pool (`--blas-threads`, default: OpenBLAS's own choice).
HTTP/1.0, one request per connection, so an idle server holds no connected
socket, only the listening one.

Run with the project venv:
    .venv/bin/python server.py --port 8080 --log server.log [--ready-file F]
--port 0 takes a free port; --ready-file receives {"pid", "port"} (JSON,
written atomically) once the server answers.
"""

import os
import sys


def _blas_threads_from_argv():
    # Before numpy is imported: OpenBLAS/OpenMP/MKL start their pools at load.
    for i, a in enumerate(sys.argv):
        if a == "--blas-threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--blas-threads="):
            return a.split("=", 1)[1]
    return None


_blas = _blas_threads_from_argv()
if _blas is not None:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _blas

import argparse  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm  # noqa: E402

MAX_TEXTS = 64
MAX_BODY = 1 << 20
EXTRA_SEED = 20240611
EXTRA_SLICE_ROWS = 64


def log(msg):
    sys.stderr.write(f"server[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


def redirect_stdio(log_path):
    """stdin from /dev/null, stdout and stderr appended to log_path, no other fd."""
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    # drop whatever the launcher leaked (a shell's pipes, a terminal)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def thread_count():
    return len(os.listdir("/proc/self/task"))


def open_fds():
    fds = {}
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            pass  # the fd listdir itself used
    return fds


class ExtraWeights:
    """--size-mb: N MiB of extra float32 "weights", random with a fixed seed,
    every page written. Each request projects its first embedding through a
    64-row slice chosen by the first text's CRC32, so the figure is the same
    for the same text before and after a restore, and a wrong page shows."""

    def __init__(self, size_mb, dim):
        rows = max(EXTRA_SLICE_ROWS, (size_mb << 20) // (4 * dim))
        rng = np.random.default_rng(EXTRA_SEED)
        self.w = rng.standard_normal((rows, dim), dtype=np.float32)
        self.rows = rows

    def project(self, text, emb):
        start = zlib.crc32(text.encode("utf-8")) % (self.rows - EXTRA_SLICE_ROWS + 1)
        return float(np.abs(self.w[start : start + EXTRA_SLICE_ROWS] @ emb).sum())


HEARTBEAT_S = 0.02


class App:
    def __init__(self, model, extra):
        self.model = model
        self.extra = extra
        self.requests = 0
        self.heartbeats = 0
        self.lock = threading.Lock()

    def heartbeat(self):
        while True:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                self.heartbeats += 1

    def health(self):
        with self.lock:
            return {
                "ok": True,
                "requests": self.requests,
                "heartbeats": self.heartbeats,
                "pid": os.getpid(),
                "threads": thread_count(),
            }

    def embed(self, texts):
        emb = self.model.embed(texts)
        with self.lock:
            self.requests += 1
            count = self.requests
        out = {"embeddings": emb.tolist(), "count": count}
        if self.extra is not None and texts:
            out["extra"] = self.extra.project(texts[0], emb[0])
        return out


class Handler(BaseHTTPRequestHandler):
    server_version = "snaprun-minilm/0.1"
    # HTTP/1.0: one request per connection, so an idle server holds no
    # connected socket, only the listening one.
    protocol_version = "HTTP/1.0"

    def _reply(self, status, doc):
        body = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, self.server.app.health())
        else:
            self._reply(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self):
        if self.path != "/embed":
            self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._reply(400, {"error": f"Content-Length must be 1..{MAX_BODY}"})
            return
        try:
            doc = json.loads(self.rfile.read(length))
            texts = doc["texts"]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError("texts must be a list of strings")
            if len(texts) > MAX_TEXTS:
                raise ValueError(f"at most {MAX_TEXTS} texts per request")
        except (ValueError, KeyError, TypeError) as e:
            self._reply(400, {"error": f"bad request: {e}"})
            return
        self._reply(200, self.server.app.embed(texts))

    def log_message(self, format, *args):  # noqa: A002 (http.server's name)
        log(f"{self.address_string()} {format % args}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--model-dir", default=minilm.default_model_dir(), help="unpacked all-MiniLM-L6-v2 (default: %(default)s)")
    p.add_argument("--size-mb", type=int, default=0, help="extra MiB of random weights used in each request")
    p.add_argument("--log", help="redirect stdin from /dev/null and stdout/stderr to this file")
    p.add_argument("--ready-file", help="write {pid, port} here (atomically) once serving")
    p.add_argument("--blas-threads", type=int, help="OpenBLAS/OpenMP threads (default: the library's)")
    args = p.parse_args()

    if args.log:
        redirect_stdio(args.log)
    t0 = time.monotonic()
    model = minilm.MiniLM(args.model_dir)
    extra = ExtraWeights(args.size_mb, model.hidden) if args.size_mb > 0 else None
    app = App(model, extra)
    model.embed(["warm-up: the first forward pass allocates the work buffers"])
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.app = app
    port = server.server_address[1]
    threading.Thread(target=app.heartbeat, name="heartbeat", daemon=True).start()

    log(
        f"ready on http://{args.host}:{port} in {time.monotonic() - t0:.2f}s "
        f"(threads={thread_count()}, extra={args.size_mb} MiB, fds={open_fds()})"
    )
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "port": port}, f)
        os.rename(tmp, args.ready_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
