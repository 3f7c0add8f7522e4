#!/bin/bash
# The demo: cold start vs restore of the example inference server.
#   bash scripts/demo.sh
# Starts tests/workloads/inference_server/server.py, measures its cold start
# (process start to first correct /embed answer), warms it, checkpoints it
# with `snaprun checkpoint`, restores it with `snaprun restore`, measures the
# time to the first correct answer, checks the restored process answers with
# the same embedding and a request counter that went on, and prints a table.
#
# Environment: SNAPRUN_DEMO_PORT (default 18080), SNAPRUN_DEMO_SIZE_MB (extra
# weights, default 0), SNAPRUN_VENV, SNAPRUN_DEMO_KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PORT=${SNAPRUN_DEMO_PORT:-18080}
SIZE_MB=${SNAPRUN_DEMO_SIZE_MB:-0}
VENV=${SNAPRUN_VENV:-$REPO/.venv}
SNAPRUN=$REPO/target/release/snaprun
SERVER=$REPO/tests/workloads/inference_server/server.py
URL=http://127.0.0.1:$PORT
SENTENCE="snaprun restores a warmed inference process."
WARMUP=5
WAIT_S=60

say() { echo "demo: $*" >&2; }
die() {
    say "error: $*"
    if [[ -n ${WORK:-} && -s $WORK/server.log ]]; then
        say "last lines of $WORK/server.log:"
        tail -n 20 "$WORK/server.log" >&2
    fi
    exit 1
}

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -n ${WORK:-} && ${SNAPRUN_DEMO_KEEP:-0} != 1 ]]; then
        rm -rf "$WORK"
    elif [[ -n ${WORK:-} ]]; then
        say "work dir kept: $WORK"
    fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# embed TEXT: prints the /embed reply (one short-timeout try); fails if none
embed() {
    curl -sS --fail --max-time 5 -H 'Content-Type: application/json' \
        --data "{\"texts\": [\"$1\"]}" "$URL/embed"
}

# wait_answer: polls /embed every 10 ms until a correct answer (384 finite
# numbers); prints it. Fails after WAIT_S seconds.
wait_answer() {
    local deadline reply
    deadline=$(($(date +%s) + WAIT_S))
    while (($(date +%s) < deadline)); do
        if reply=$(curl -s --fail --max-time 1 -H 'Content-Type: application/json' \
            --data "{\"texts\": [\"$SENTENCE\"]}" "$URL/embed" 2>/dev/null) &&
            check_reply "$reply" >/dev/null; then
            echo "$reply"
            return 0
        fi
        sleep 0.01
    done
    return 1
}

# check_reply JSON: prints "COUNT SHA" (count and a hash of the embedding)
check_reply() {
    "$VENV/bin/python" -c '
import hashlib, json, math, sys
d = json.loads(sys.argv[1])
e = d["embeddings"]
assert len(e) == 1 and len(e[0]) == 384 and all(math.isfinite(v) for v in e[0]), "bad embedding"
n = math.sqrt(sum(v * v for v in e[0]))
assert abs(n - 1) < 1e-3, f"norm {n}"
print(d["count"], hashlib.sha256(json.dumps(e).encode()).hexdigest()[:16], d.get("extra", "-"))
' "$1"
}

# wait_port_free: the checkpointed source is gone once its port is free
wait_port_free() {
    local deadline=$(($(date +%s) + WAIT_S))
    while port_busy; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.01
    done
}

# --- preparation --------------------------------------------------------------
say "setup"
bash scripts/setup.sh
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
say "cargo build --release -p snaprun-runtime"
cargo build --release -q -p snaprun-runtime || die "build of snaprun failed"
[[ -x $SNAPRUN ]] || die "$SNAPRUN not built"
command -v setsid >/dev/null || die "setsid not found (util-linux)"
! port_busy || die "port $PORT is in use (set SNAPRUN_DEMO_PORT)"

WORK=$(mktemp -d -t snaprun-demo.XXXXXX)
IMG=$WORK/img
LOG=$WORK/server.log

# --- cold start ---------------------------------------------------------------
say "starting the server (port $PORT, extra weights $SIZE_MB MiB)"
t0=$(now)
# The server redirects its own stdio with --log; the shell's redirection only
# catches what Python prints before that (an import error).
# shellcheck disable=SC2094
setsid "$VENV/bin/python" "$SERVER" --host 127.0.0.1 --port "$PORT" \
    --size-mb "$SIZE_MB" --log "$LOG" </dev/null >>"$LOG" 2>&1 &
SRC_PID=$!
PIDS+=("$SRC_PID")
reply=$(wait_answer) || die "the server gave no correct answer in ${WAIT_S}s"
t1=$(now)
COLD=$(elapsed "$t0" "$t1")
say "cold start: ${COLD}s (pid $SRC_PID)"

# --- warm-up, reference answer, sanity of what will be checkpointed -------------
for _ in $(seq "$WARMUP"); do
    embed "warm-up request $RANDOM" >/dev/null || die "warm-up request failed"
done
read -r WARM_COUNT WANT_SHA WANT_EXTRA < <(check_reply "$(embed "$SENTENCE")") ||
    die "no reference answer"
tasks=("/proc/$SRC_PID/task"/*)
threads=${#tasks[@]}
fds=$(for fd in /proc/"$SRC_PID"/fd/*; do printf '%s -> %s\n' "${fd##*/}" "$(readlink "$fd")"; done)
say "source: pid $SRC_PID, $threads threads, requests $WARM_COUNT, fds:"
printf '    %s\n' "${fds//$'\n'/$'\n'    }" >&2
while read -r _ target; do
    target=${target#-> }
    [[ $target == /dev/null || $target == "$LOG" || $target == socket:* ]] ||
        die "unexpected fd in the server: $target"
done <<<"$fds"

# --- checkpoint -----------------------------------------------------------------
say "snaprun checkpoint --pid $SRC_PID --image-path $IMG --timings"
t0=$(now)
timeout 300 "$SNAPRUN" checkpoint --pid "$SRC_PID" --image-path "$IMG" --timings ||
    die "snaprun checkpoint failed"
t1=$(now)
CKPT=$(elapsed "$t0" "$t1")
wait "$SRC_PID" 2>/dev/null || true # reap the source (ended with SIGKILL)
wait_port_free || die "port $PORT still in use ${WAIT_S}s after the checkpoint"
IMG_SIZE=$(du -sh "$IMG" | cut -f1)

# --- restore --------------------------------------------------------------------
say "snaprun restore --image-path $IMG --timings"
t0=$(now)
RST_PID=$(timeout 300 "$SNAPRUN" restore --image-path "$IMG" --pid-file "$WORK/restored.pid" --timings) ||
    die "snaprun restore failed"
RST_PID=$(tail -n 1 <<<"$RST_PID")
[[ $RST_PID =~ ^[0-9]+$ ]] || die "snaprun restore printed no pid (got '$RST_PID')"
PIDS+=("$RST_PID")
reply=$(wait_answer) || die "the restored server (pid $RST_PID) gave no correct answer in ${WAIT_S}s"
t1=$(now)
RESTORE=$(elapsed "$t0" "$t1")
read -r GOT_COUNT GOT_SHA GOT_EXTRA < <(check_reply "$reply")

[[ $GOT_SHA == "$WANT_SHA" ]] || die "restored embedding differs (sha $GOT_SHA, before $WANT_SHA)"
[[ $GOT_EXTRA == "$WANT_EXTRA" ]] || die "restored extra weights differ ($GOT_EXTRA, before $WANT_EXTRA)"
((GOT_COUNT > WARM_COUNT)) || die "request counter restarted: $GOT_COUNT after restore, $WARM_COUNT before"
health=$(curl -sS --fail --max-time 5 "$URL/health") || die "restored /health failed"
say "restored: pid $RST_PID, counter $WARM_COUNT -> $GOT_COUNT, health $health"

# --- report -----------------------------------------------------------------------
RATIO=$(awk -v c="$COLD" -v r="$RESTORE" 'BEGIN { printf "%.1fx", (r > 0 ? c / r : 0) }')
printf '\n%-32s %s\n' "cold start (s)" "$COLD"
printf '%-32s %s\n' "checkpoint (s)" "$CKPT"
printf '%-32s %s\n' "restore to first answer (s)" "$RESTORE"
printf '%-32s %s\n' "ratio cold / restore" "$RATIO"
printf '%-32s %s\n' "image size" "$IMG_SIZE"
printf '%-32s %s\n' "embedding identical" "yes ($GOT_SHA)"

kill -TERM "$RST_PID" 2>/dev/null || true
say "done"
