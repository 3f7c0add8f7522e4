#!/usr/bin/env python3
"""The CUDA driver's process checkpoint calls through ctypes, for
measurements that snaprun's own numbers are compared with (what
NVIDIA's cuda-checkpoint utility does, in place, with no CPU dump).

    driver.py state|suspend|resume PID      one call, then exit (pays cuInit)
    driver.py serve                         a resident caller: cuInit once,
                                            then one command per stdin line
                                            ("suspend PID", "resume PID",
                                            "state PID"), one JSON line out

Every answer is JSON with the seconds each driver call took.
"""

import ctypes
import json
import os
import sys
import time

STATES = ["running", "locked", "checkpointed", "failed", "checkpointing", "restoring"]


class LockArgs(ctypes.Structure):
    _fields_ = [("timeoutMs", ctypes.c_uint), ("reserved0", ctypes.c_uint),
                ("reserved1", ctypes.c_uint64 * 7)]


class PlainArgs(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_uint64 * 8)]


class RestoreArgs(ctypes.Structure):
    _fields_ = [("gpuPairs", ctypes.c_void_p), ("gpuPairsCount", ctypes.c_uint),
                ("reserved", ctypes.c_char * 44), ("reserved1", ctypes.c_uint64)]


for _s in (LockArgs, PlainArgs, RestoreArgs):
    assert ctypes.sizeof(_s) == 64, _s


class DriverError(Exception):
    pass


class Driver:
    def __init__(self, path=None):
        # The library snaprun loads: $SNAPRUN_LIBCUDA, else libcuda.so.1.
        path = path or os.environ.get("SNAPRUN_LIBCUDA") or "libcuda.so.1"
        t0 = time.monotonic()
        self.lib = ctypes.CDLL(path)
        self._call("cuInit", ctypes.c_uint(0))
        self.init_seconds = time.monotonic() - t0
        v = ctypes.c_int(0)
        self._call("cuDriverGetVersion", ctypes.byref(v))
        self.version = v.value

    def _call(self, name, *args):
        r = getattr(self.lib, name)(*args)
        if r != 0:
            s = ctypes.c_char_p()
            self.lib.cuGetErrorName(r, ctypes.byref(s))
            raise DriverError("{} failed: {} ({})".format(
                name, (s.value or b"?").decode(), r))

    def timed(self, name, pid, args):
        t0 = time.monotonic()
        self._call(name, ctypes.c_int(pid), ctypes.byref(args) if args is not None else None)
        return time.monotonic() - t0

    def state(self, pid):
        s = ctypes.c_int(-1)
        self._call("cuCheckpointProcessGetState", ctypes.c_int(pid), ctypes.byref(s))
        return STATES[s.value] if 0 <= s.value < len(STATES) else str(s.value)

    def suspend(self, pid, timeout_ms=30000):
        lock = self.timed("cuCheckpointProcessLock", pid, LockArgs(timeoutMs=timeout_ms))
        try:
            ckpt = self.timed("cuCheckpointProcessCheckpoint", pid, PlainArgs())
        except DriverError:
            self.timed("cuCheckpointProcessUnlock", pid, PlainArgs())
            raise
        return {"lock": lock, "checkpoint": ckpt}

    def resume(self, pid):
        restore = self.timed("cuCheckpointProcessRestore", pid, RestoreArgs())
        unlock = self.timed("cuCheckpointProcessUnlock", pid, PlainArgs())
        return {"restore": restore, "unlock": unlock}


def run(drv, op, pid):
    if op == "state":
        return {"state": drv.state(pid)}
    if op == "suspend":
        return drv.suspend(pid)
    if op == "resume":
        return drv.resume(pid)
    raise ValueError("unknown command " + op)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "serve":
        drv = Driver()
        print(json.dumps({"ready": True, "init": drv.init_seconds, "version": drv.version}),
              flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                out = run(drv, words[0], int(words[1]))
                out["ok"] = True
            except (DriverError, ValueError, IndexError) as e:
                out = {"ok": False, "error": str(e)}
            print(json.dumps(out), flush=True)
        return 0
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.monotonic()
    drv = Driver()
    out = run(drv, sys.argv[1], int(sys.argv[2]))
    out["init"] = drv.init_seconds
    out["total"] = time.monotonic() - t0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
