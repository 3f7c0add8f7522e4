#!/usr/bin/env python3
"""snaprun's GPU test, on a machine with an NVIDIA GPU and driver >= 570:

    test.py SNAPRUN [--size 1b|8b] [--keep]

with SNAPRUN a prebuilt snaprun binary. Starts the model server
(server.py), takes its answer to the fixed prompt (16 greedy tokens), and
checks that the same tokens come back:

 1. hot-swap: `snaprun gpu suspend` (the process leaves the GPU, as
    nvidia-smi shows), `gpu state` says checkpointed, `gpu resume`;
 2. `snaprun checkpoint --leave-running`: the source keeps answering;
 3. `snaprun checkpoint` (the source is killed), `snaprun restore`: the
    restored process keeps its pid, is running for the driver, answers the
    same tokens, and its request counter went on;
 4. a second restore of the same snapshot, after the first is killed.

Prints one line per step and exits non-zero at the first failure, with the
server's log.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)
    h.log("ok: " + what)


def main():
    ap = argparse.ArgumentParser(description="snaprun GPU test")
    ap.add_argument("snaprun")
    ap.add_argument("--size", default="1b")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    snap = h.Snaprun(args.snaprun)
    h.become_subreaper()
    work = h.workdir(args.keep)
    image = os.path.join(work, "img")
    srv = h.Server(work, args.size)
    restored = []
    try:
        port = srv.wait_ready()
        h.log("server pid {} on port {}: {} ({})".format(
            srv.pid, port, h.http(port, "/health")["model"], h.gpu_info()))
        ref = h.generate(port)
        h.log("reference tokens " + " ".join(map(str, ref)))
        expect(h.generate(port) == ref, "the server is deterministic")

        # 1. Hot-swap.
        expect(srv.pid in h.gpu_pids(), "nvidia-smi lists the server on the GPU")
        _, secs = snap.run("gpu", "suspend", srv.pid)
        r, _ = snap.run("gpu", "state", srv.pid)
        expect(r.stdout.strip() == "checkpointed", "gpu suspend ({:.2f} s): state is checkpointed".format(secs))
        expect(srv.pid not in h.gpu_pids(), "the suspended server holds no GPU memory")
        _, secs = snap.run("gpu", "resume", srv.pid)
        expect(h.generate(port) == ref, "gpu resume ({:.2f} s): same tokens".format(secs))

        # 2. Checkpoint, leaving the source running.
        r, secs = snap.checkpoint(srv.pid, image, "--leave-running")
        h.log(r.stderr.strip())
        expect(h.alive(srv.pid), "checkpoint --leave-running ({:.1f} s): the source runs".format(secs))
        expect(h.generate(port) == ref, "the source answers the same tokens")
        shutil.rmtree(image)

        # 3. Checkpoint (the source dies) and restore.
        before = h.http(port, "/health")["requests"]
        r, secs = snap.checkpoint(srv.pid, image)
        h.log(r.stderr.strip())
        srv.reap()
        expect(not h.alive(srv.pid), "checkpoint ({:.1f} s): the source was ended".format(secs))
        for round_ in (1, 2):
            pid, r, secs = snap.restore(image)
            restored.append(pid)
            h.log(r.stderr.strip())
            expect(pid == srv.pid, "restore {} ({:.1f} s): pid {} kept".format(round_, secs, pid))
            st, _ = snap.run("gpu", "state", pid)
            expect(st.stdout.strip() == "running", "the restored process is running for the driver")
            tokens = h.generate(port)
            expect(tokens == ref, "the restored process answers the same tokens")
            health = h.http(port, "/health")
            expect(health["requests"] == before + 1,
                   "its request counter went on ({} -> {})".format(before, health["requests"]))
            h.kill(pid)
        h.log("PASS")
        return 0
    except (Failed, RuntimeError) as e:
        h.log("FAIL: {}".format(e))
        h.log("server log:\n" + srv.tail())
        return 1
    finally:
        h.kill(srv.pid)
        for pid in restored:
            h.kill(pid)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
