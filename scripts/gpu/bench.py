#!/usr/bin/env python3
"""snaprun's GPU benchmark: every figure measured in one run, on one GPU.

    bench.py SNAPRUN [--size 8b] [--json FILE] [--keep]

For the model server (server.py) of the given size it measures:

  cold start        spawning the server until its first token arrives
  driver-only       the driver's restore + unlock in place, from a resident
                    caller that paid cuInit before (what cuda-checkpoint
                    does, without its per-call start-up), and to the first
                    token after it; the baseline of the restore goal
  hot-swap          `snaprun gpu suspend` and `snaprun gpu resume` (+ first
                    token), each a fresh snaprun process
  checkpoint        `snaprun checkpoint --no-compress` (GPU checkpoint and
                    CPU dump; the source is ended)
  restore           `snaprun restore` until the restored server's first
                    token arrives

and prints a Markdown table with the date, GPU and driver, each figure and
its ratio to its baseline, and the issue's goals (restore to first token
<= 1.15 x driver-only; hot-swap resume <= 2 s for 8B). Every answer is
checked against the server's reference tokens.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def table(res):
    d = res["figures"]
    rows = [
        ("cold start to first token", d["cold_start"], "1.00 (baseline)"),
        ("driver restore+unlock, in place (resident caller)", d["driver_restore"], ""),
        ("driver-only restore to first token (resident caller)", d["driver_first_token"],
         "1.00 (baseline of the restore goal)"),
        ("hot-swap suspend (`snaprun gpu suspend`)", d["hotswap_suspend"], ""),
        ("hot-swap resume to first token (`snaprun gpu resume`)", d["hotswap_resume"],
         "{:.2f}x driver-only".format(d["hotswap_resume"] / d["driver_first_token"])),
        ("snaprun checkpoint (GPU checkpoint + dump, --no-compress)", d["checkpoint"], ""),
        ("snaprun restore to first token", d["restore_first_token"],
         "{:.2f}x driver-only; cold start / restore = {:.1f}x".format(
             d["restore_first_token"] / d["driver_first_token"],
             d["cold_start"] / d["restore_first_token"])),
    ]
    out = ["{}, {}, snaprun {}".format(res["date"], res["gpu"], res["snaprun"]),
           "model: {}; image {:.1f} GB".format(res["model"], res["image_bytes"] / 1e9),
           "",
           "| measure | seconds | ratio |",
           "| --- | ---: | --- |"]
    out += ["| {} | {:.3f} | {} |".format(a, b, c) for a, b, c in rows]
    ratio = d["restore_first_token"] / d["driver_first_token"]
    out += ["",
            "goal restore-to-first-token <= 1.15x driver-only: {:.2f}x, {}".format(
                ratio, "met" if ratio <= 1.15 else "NOT met"),
            "goal hot-swap resume <= 2 s{}: {:.2f} s, {}".format(
                " (8B)" if res["size"] == "8b" else " (set for 8B)", d["hotswap_resume"],
                "met" if d["hotswap_resume"] <= 2.0 else "NOT met")]
    return "\n".join(out)


def check(got, ref, what):
    if got != ref:
        raise RuntimeError("{}: tokens differ: {} vs {}".format(what, got, ref))


def main():
    ap = argparse.ArgumentParser(description="snaprun GPU benchmark")
    ap.add_argument("snaprun")
    ap.add_argument("--size", default="8b")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    snap = h.Snaprun(args.snaprun)
    h.become_subreaper()
    work = h.workdir(args.keep)
    image = os.path.join(work, "img")
    fig = {}
    srv = h.Server(work, args.size)
    restored = None
    resident = None
    try:
        # Cold start: spawn to first token (the port is known once ready).
        port = srv.wait_ready()
        h.first_token(port)
        fig["cold_start"] = time.monotonic() - srv.started
        health = h.http(port, "/health")
        h.log("cold start {:.2f} s ({}, load {:.2f} s)".format(
            fig["cold_start"], health["model"], health["load_seconds"]))
        ref = h.generate(port)

        # Driver-only, in place, from a caller that is already initialised.
        resident = h.Resident()
        h.log("resident driver caller: cuInit took {:.3f} s".format(resident.hello["init"]))
        s = resident.call("suspend", srv.pid)
        h.log("driver lock {lock:.3f} s, checkpoint {checkpoint:.3f} s".format(**s))
        t0 = time.monotonic()
        r = resident.call("resume", srv.pid)
        h.first_token(port)
        fig["driver_first_token"] = time.monotonic() - t0
        fig["driver_restore"] = r["restore"] + r["unlock"]
        fig["driver_checkpoint"] = s["lock"] + s["checkpoint"]
        check(h.generate(port), ref, "after the driver-only restore")

        # Hot-swap through snaprun's CLI.
        _, fig["hotswap_suspend"] = snap.run("gpu", "suspend", srv.pid)
        t0 = time.monotonic()
        snap.run("gpu", "resume", srv.pid)
        h.first_token(port)
        fig["hotswap_resume"] = time.monotonic() - t0
        check(h.generate(port), ref, "after hot-swap")

        # Checkpoint (the source ends), then restore to first token.
        r, fig["checkpoint"] = snap.checkpoint(srv.pid, image, "--no-compress")
        h.log("checkpoint:\n" + r.stderr.strip())
        srv.reap()
        image_bytes = sum(os.path.getsize(os.path.join(d, f))
                          for d, _, fs in os.walk(image) for f in fs)
        os.sync()
        t0 = time.monotonic()
        restored, r, _ = snap.restore(image)
        h.first_token(port)
        fig["restore_first_token"] = time.monotonic() - t0
        h.log("restore:\n" + r.stderr.strip())
        check(h.generate(port), ref, "after snaprun restore")

        res = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "gpu": h.gpu_info(),
            "snaprun": snap.run("--version")[0].stdout.strip(),
            "size": args.size,
            "model": health["model"],
            "image_bytes": image_bytes,
            "figures": fig,
        }
        print(table(res))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
        return 0
    except RuntimeError as e:
        h.log("FAIL: {}".format(e))
        h.log("server log:\n" + srv.tail())
        return 1
    finally:
        if resident:
            resident.close()
        h.kill(srv.pid)
        h.kill(restored)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
