"""What the GPU test and benchmark share: starting the server, talking to
it, running snaprun, the resident driver caller, and cleaning up."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36


def log(msg):
    print("gpu: " + msg, file=sys.stderr, flush=True)


def become_subreaper():
    """Restored processes (children of `snaprun restore`, which exits) come
    to us, so they can be reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/{}/stat".format(pid)) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def kill(pid):
    if pid and alive(pid):
        os.kill(pid, signal.SIGKILL)
        for _ in range(500):
            reap()
            if not alive(pid):
                return
            time.sleep(0.01)


def http(port, path, body=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:{}{}".format(port, path), data=data)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def generate(port, n=16, timeout=600):
    return http(port, "/generate", {"n": n}, timeout)["tokens"]


def first_token(port, deadline_s=600):
    """Asks for one token, retrying until the server accepts connections."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return generate(port, 1)
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


class Server:
    """The model server as a child of this process, stdin from /dev/null and
    its output to a file (a terminal or a pipe could not be checkpointed)."""

    def __init__(self, workdir, size, python=sys.executable, port=0):
        self.workdir = workdir
        self.ready = os.path.join(workdir, "ready")
        self.logpath = os.path.join(workdir, "server.log")
        self.port = port
        self.started = time.monotonic()
        with open(self.logpath, "ab") as out, open(os.devnull, "rb") as null:
            self.proc = subprocess.Popen(
                [python, os.path.join(HERE, "server.py"), "--size", size,
                 "--port", str(port), "--ready-file", self.ready],
                stdin=null, stdout=out, stderr=out, cwd=workdir,
                close_fds=True, start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, timeout=900):
        end = time.monotonic() + timeout
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise RuntimeError("server exited ({}):\n{}".format(
                    self.proc.returncode, self.tail()))
            if time.monotonic() > end:
                raise RuntimeError("server not ready after {} s".format(timeout))
            time.sleep(0.02)
        with open(self.ready) as f:
            self.port = int(f.read())
        return self.port

    def tail(self, n=40):
        with open(self.logpath, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def reap(self, timeout=60):
        """Waits for the source to end (checkpoint kills it)."""
        return self.proc.wait(timeout)


class Snaprun:
    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        if not os.access(self.binary, os.X_OK):
            raise SystemExit("not an executable snaprun: " + binary)

    def run(self, *args, check=True):
        t0 = time.monotonic()
        r = subprocess.run([self.binary] + [str(a) for a in args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        secs = time.monotonic() - t0
        if check and r.returncode != 0:
            raise RuntimeError("snaprun {} failed ({}):\n{}{}".format(
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r, secs

    def checkpoint(self, pid, image, *extra):
        return self.run("checkpoint", "--pid", pid, "--image-path", image, "--timings", *extra)

    def restore(self, image, *extra):
        r, secs = self.run("restore", "--image-path", image, "--timings", *extra)
        return int(r.stdout.split()[-1]), r, secs


class Resident:
    """driver.py serve: a caller that paid cuInit before the measurement."""

    def __init__(self, python=sys.executable):
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "driver.py"), "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = json.loads(self.proc.stdout.readline())

    def call(self, op, pid):
        t0 = time.monotonic()
        self.proc.stdin.write("{} {}\n".format(op, pid))
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        out["wall"] = time.monotonic() - t0
        if not out.get("ok"):
            raise RuntimeError("driver {} {}: {}".format(op, pid, out.get("error")))
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(30)


def gpu_info():
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
        return r.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown GPU (nvidia-smi failed)"


def gpu_pids():
    """Pids with memory on a GPU, as nvidia-smi lists them."""
    r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=60)
    return {int(w) for w in r.stdout.split() if w.isdigit()}


def workdir(keep):
    d = tempfile.mkdtemp(prefix="snaprun-gpu-")
    if keep:
        log("work dir " + d)
    return d
