#!/bin/bash
# Container start through containerd, with snaprun's shim beside the
# baselines, in one run (rounds interleave the runtimes):
#   bash scripts/bench-shim.sh [RUNS]      (default 10 rounds)
# - busybox: `ctr run --rm` of `sh -c 'echo first'`: time from the start of
#   `ctr run` to the container's first output line, and to ctr's exit;
# - the example inference server (tests/workloads/inference_server): time
#   from the start of `ctr run -d` to its first correct /embed answer (the
#   container shares the host's /usr and the repository read-only, and the
#   host network); the same server started as a plain host process is the
#   baseline without a container;
# - restore-on-create of that server through this shim: time from the
#   start of `ctr run -d --annotation io.snaprun.snapshot=bench:warm` to
#   its first correct /embed answer (the same embedding as the cold
#   server's, the request counter going on from the snapshot's). The
#   snapshot is made once before the rounds: the server started cold
#   through this shim, warmed with one request, `snaprun checkpoint --to`
#   into a store in the run's temp dir.
# Runtimes: io.containerd.snaprun.v1 (this shim + snaprun), containerd's
# runc shim with snaprun as its runc binary, and the runc shim with runc.
# A private containerd (own socket, root and state in a temp dir) runs them.
# Prints medians, the shim's against runc's, and the shim's cold start
# against its restore-on-create, as ratios.
#
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
RUNS=${1:-10}
PORT=${SNAPRUN_BENCH_PORT:-18090}
VENV=${SNAPRUN_VENV:-$REPO/.venv}
SERVER=$REPO/tests/workloads/inference_server/server.py
URL=http://127.0.0.1:$PORT

say() { echo "bench-shim: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

bash scripts/setup.sh
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
cargo build --release -q -p snaprun-runtime -p containerd-shim-snaprun
SNAPRUN=$REPO/target/release/snaprun
SHIM=$REPO/target/release/containerd-shim-snaprun-v1
[[ -x $SNAPRUN && -x $SHIM ]] || die "snaprun or the shim is not built"

WORK=$(mktemp -d /tmp/snaprun-bench-shim.XXXXXX)
CTRD_PID=
HOST_PID=
cleanup() {
    if [[ -n $HOST_PID ]]; then kill -9 "$HOST_PID" 2>/dev/null || true; fi
    if [[ -n $CTRD_PID ]]; then
        local id
        for id in $(ctr_ task ls -q 2>/dev/null); do
            ctr_ task kill -s KILL "$id" >/dev/null 2>&1 || true
            ctr_ task rm -f "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_ containers ls -q 2>/dev/null); do
            ctr_ containers rm "$id" >/dev/null 2>&1 || true
        done
        kill "$CTRD_PID" 2>/dev/null || true
        wait "$CTRD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    rmdir "/run/containerd/snaprun/$NS" "/run/containerd/runc/$NS" 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# A namespace of this run's own: snaprun's and runc's state dirs below
# /run/containerd are shared by every containerd on the machine.
NS=bench-$$
ctr_() { ctr --address "$WORK/c.sock" --namespace "$NS" "$@"; }

# --- a private containerd with the shim on its PATH ---------------------------------
mkdir -p "$WORK/bin"
ln -s "$SHIM" "$WORK/bin/containerd-shim-snaprun-v1"
cat >"$WORK/config.toml" <<EOF
version = 2
root = "$WORK/root"
state = "$WORK/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/c.sock"
[ttrpc]
  address = "$WORK/c.sock.ttrpc"
[debug]
  address = "$WORK/debug.sock"
[metrics]
  address = ""
EOF
PATH="$WORK/bin:$PATH" containerd --config "$WORK/config.toml" </dev/null >"$WORK/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 500); do
    ctr_ version >/dev/null 2>&1 && break
    sleep 0.01
done
ctr_ version >/dev/null 2>&1 || die "containerd did not start: $(tail -n 5 "$WORK/containerd.log")"

# --- rootfs: busybox; for the server, a skeleton over the host's /usr ---------------
BB=$WORK/busybox
mkdir -p "$BB"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$BB/bin/"
for a in sh echo sleep cat; do ln -s busybox "$BB/bin/$a"; done
PY=$WORK/pyroot
mkdir -p "$PY"/{usr,proc,sys,dev,tmp,etc}
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$PY/$d"; done
mkdir -p "$PY$REPO"
PY_MOUNTS=(--mount "type=bind,src=/usr,dst=/usr,options=rbind:ro"
    --mount "type=bind,src=$REPO,dst=$REPO,options=rbind:ro")
# The venv, and the interpreter it was made from, when outside /usr and
# the repository (pyenv's, for instance).
PY_HOME=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')
for dir in "$VENV" "$PY_HOME"; do
    if [[ $dir != "$REPO"/* && $dir != /usr && $dir != /usr/* ]]; then
        mkdir -p "$PY$dir"
        PY_MOUNTS+=(--mount "type=bind,src=$dir,dst=$dir,options=rbind:ro")
    fi
done

# runtime_flags NAME: the ctr flags of each runtime
runtime_flags() {
    case $1 in
    shim) echo "--runtime io.containerd.snaprun.v1" ;;
    runc-shim-snaprun) echo "--runtime io.containerd.runc.v2 --runc-binary $SNAPRUN" ;;
    runc-shim-runc) echo "--runtime io.containerd.runc.v2" ;;
    esac
}
RUNTIMES=(shim runc-shim-snaprun runc-shim-runc)

# wait_answer: polls /embed until an embedding comes (60 s at most); the
# answer is left in $WORK/answer.json
wait_answer() {
    for _ in $(seq 6000); do
        if curl -s --fail --max-time 1 -H 'Content-Type: application/json' \
            --data '{"texts": ["snaprun"]}' -o "$WORK/answer.json" "$URL/embed" 2>/dev/null &&
            grep -q '"embeddings":\[\[' "$WORK/answer.json"; then
            return 0
        fi
        sleep 0.01
    done
    return 1
}
# answer_vectors / answer_count: the last answer's embedding and counter
answer_vectors() { grep -o '"embeddings":\[\[[^]]*\]\]' "$WORK/answer.json"; }
answer_count() { grep -o '"count":[0-9]*' "$WORK/answer.json" | cut -d: -f2; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
wait_port_free() {
    for _ in $(seq 1000); do
        port_free && return 0
        sleep 0.01
    done
    die "port $PORT still busy"
}
port_free || die "port $PORT is in use (set SNAPRUN_BENCH_PORT)"

# busybox_once RT ROUND: "first exit" seconds
busybox_once() {
    local id=bb-$1-$2 t0 t1 t2 flags
    read -ra flags <<<"$(runtime_flags "$1")"
    t0=$(now)
    ctr_ run --rm "${flags[@]}" --cgroup "snaprun-bench/$id" --rootfs "$BB" "$id" \
        /bin/sh -c 'echo first; sleep 0.05' </dev/null |
        {
            read -r line
            [[ $line == first ]] || die "$1: unexpected first line '$line'"
            now >"$WORK/t1"
            cat >/dev/null
        }
    t2=$(now)
    t1=$(cat "$WORK/t1")
    echo "$(elapsed "$t0" "$t1") $(elapsed "$t0" "$t2")"
}

# run_server ID FLAGS...: `ctr run -d` of the server in container ID
run_server() {
    local id=$1
    shift
    ctr_ run -d --net-host "$@" --cgroup "snaprun-bench/$id" "${PY_MOUNTS[@]}" \
        --rootfs "$PY" "$id" "$VENV/bin/python" "$SERVER" --host 127.0.0.1 --port "$PORT" \
        --log /tmp/server.log </dev/null >/dev/null
}
# stop_server ID: kill, remove, wait for the port
stop_server() {
    local id=$1
    ctr_ task kill -s KILL "$id" >/dev/null || die "$id: ctr task kill failed"
    for _ in $(seq 500); do
        [[ $(ctr_ task ls | awk -v id="$id" '$1 == id { print $3 }') == STOPPED ]] && break
        sleep 0.01
    done
    ctr_ task rm "$id" >/dev/null 2>&1
    ctr_ containers rm "$id" >/dev/null
    wait_port_free
}
server_log() { tail -n 5 "$PY/tmp/server.log" 2>/dev/null; }

# server_once RT ROUND: seconds from `ctr run -d` to the first answer
server_once() {
    local id=py-$1-$2 t0 t1 flags
    read -ra flags <<<"$(runtime_flags "$1")"
    t0=$(now)
    run_server "$id" "${flags[@]}" || die "$1: ctr run -d failed"
    wait_answer || die "$1: no answer from the server (log: $(server_log))"
    t1=$(now)
    [[ $(answer_vectors) == "$VECTORS" ]] || die "$1: another embedding than the reference"
    stop_server "$id"
    elapsed "$t0" "$t1"
}

# restore_once ROUND: seconds from `ctr run -d` with the snapshot
# annotation to the first answer (no fallback: a failed restore fails the
# run, so every answer timed is the restored server's)
restore_once() {
    local id=py-restore-$1 t0 t1
    t0=$(now)
    run_server "$id" --runtime io.containerd.snaprun.v1 \
        --annotation "io.snaprun.snapshot=$SNAPSHOT" --annotation "io.snaprun.store=$STORE" ||
        die "restore-on-create: ctr run -d failed"
    wait_answer || die "restore-on-create: no answer from the server (log: $(server_log))"
    t1=$(now)
    [[ $(answer_vectors) == "$VECTORS" ]] || die "restore-on-create: another embedding than the cold server's"
    [[ $(answer_count) == $((SNAPSHOT_COUNT + 1)) ]] ||
        die "restore-on-create: request count $(answer_count), want $((SNAPSHOT_COUNT + 1)) (not the snapshot's state)"
    stop_server "$id"
    elapsed "$t0" "$t1"
}

# host_once: the server as a plain process, start to first answer
host_once() {
    local t0 t1
    t0=$(now)
    setsid "$VENV/bin/python" "$SERVER" --host 127.0.0.1 --port "$PORT" \
        --log "$WORK/host-server.log" </dev/null >/dev/null 2>&1 &
    HOST_PID=$!
    # (HOST_PID is this subshell's: the EXIT trap of the script never sees it)
    wait_answer || {
        kill -9 "$HOST_PID" 2>/dev/null
        die "no answer from the host server (log: $(tail -n 5 "$WORK/host-server.log" 2>/dev/null))"
    }
    t1=$(now)
    kill -9 "$HOST_PID"
    wait "$HOST_PID" 2>/dev/null || true
    HOST_PID=
    wait_port_free
    elapsed "$t0" "$t1"
}

# --- the snapshot: the server cold through the shim, warmed, checkpointed ---------
STORE=$WORK/store
SNAPSHOT=bench:warm
say "snapshot $SNAPSHOT: cold start through the shim, one request, checkpoint"
run_server py-snapshot --runtime io.containerd.snaprun.v1 || die "snapshot source: ctr run -d failed"
wait_answer || die "snapshot source: no answer (log: $(server_log))"
# The reference every later answer must match, and the snapshot's counter.
VECTORS=$(answer_vectors)
SNAPSHOT_COUNT=$(answer_count)
"$SNAPRUN" --root "/run/containerd/snaprun/$NS" checkpoint --to "$SNAPSHOT" --store "$STORE" \
    py-snapshot </dev/null || die "checkpoint of py-snapshot to $SNAPSHOT failed"
for _ in $(seq 500); do
    [[ $(ctr_ task ls | awk '$1 == "py-snapshot" { print $3 }') == STOPPED ]] && break
    sleep 0.01
done
ctr_ task rm py-snapshot >/dev/null
ctr_ containers rm py-snapshot >/dev/null
wait_port_free
say "snapshot: $(du -sh "$STORE" | cut -f1) in $STORE"

say "$RUNS rounds"
# One warm-up round (page cache, first shim start) is left out.
for round in $(seq 0 "$RUNS"); do
    for rt in "${RUNTIMES[@]}"; do
        read -r first exit_s < <(busybox_once "$rt" "$round")
        answer=$(server_once "$rt" "$round")
        if ((round > 0)); then
            echo "$first" >>"$WORK/first-$rt"
            echo "$exit_s" >>"$WORK/exit-$rt"
            echo "$answer" >>"$WORK/answer-$rt"
        fi
    done
    answer=$(host_once)
    ((round > 0)) && echo "$answer" >>"$WORK/answer-host"
    answer=$(restore_once "$round")
    ((round > 0)) && echo "$answer" >>"$WORK/answer-restore"
done

printf '\n%-34s %14s %10s %18s\n' "median of $RUNS (s)" "first output" "ctr exit" "server answer"
for rt in "${RUNTIMES[@]}"; do
    printf '%-34s %14s %10s %18s\n' "$rt" "$(median <"$WORK/first-$rt")" \
        "$(median <"$WORK/exit-$rt")" "$(median <"$WORK/answer-$rt")"
done
printf '%-34s %14s %10s %18s\n' "host process (no container)" "-" "-" "$(median <"$WORK/answer-host")"
printf '%-34s %14s %10s %18s\n' "shim, restore-on-create" "-" "-" "$(median <"$WORK/answer-restore")"
ratio() { awk -v a="$(median <"$1")" -v b="$(median <"$2")" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }
printf '%-34s %14s %10s %18s\n' "shim / runc-shim-runc" \
    "$(ratio "$WORK/first-shim" "$WORK/first-runc-shim-runc")" \
    "$(ratio "$WORK/exit-shim" "$WORK/exit-runc-shim-runc")" \
    "$(ratio "$WORK/answer-shim" "$WORK/answer-runc-shim-runc")"
printf '%-34s %14s %10s %18s\n' "shim cold / restore-on-create" "-" "-" \
    "$(ratio "$WORK/answer-shim" "$WORK/answer-restore")"
