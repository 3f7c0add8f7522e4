#!/bin/bash
# Checkpoint and restore timings of a process with N MiB (default 1024) of
# private anonymous memory, with snaprun's --timings, in one run.
#   bash scripts/bench-engine.sh [MIB]
# Prints the phase tables, the bytes written to the image, and checkpoint
# and restore time beside the time the process took to fill its memory.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
cargo build --release -q -p snaprun-runtime
SNAPRUN=$PWD/target/release/snaprun
WORK=$(mktemp -d /tmp/snaprun-bench.XXXXXX)
PID=
cleanup() {
    if [[ -n $PID ]]; then kill -9 "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cc -O2 -o "$WORK/mem_big" tests/programs/mem_big.c
wait_for() { # FILE SECONDS
    local i
    for ((i = 0; i < $2 * 100; i++)); do [[ -e $1 ]] && return 0; sleep 0.01; done
    echo "bench: timed out waiting for $1" >&2
    exit 1
}
now() { date +%s.%N; }

t0=$(now)
(
    # Only stdio: an fd leaked from the caller (a pipe) cannot be checkpointed.
    for fd in "/proc/$BASHPID/fd/"*; do
        fd=${fd##*/}
        ((fd > 2)) && eval "exec $fd>&-"
    done
    exec setsid "$WORK/mem_big" "$WORK" "$MIB" </dev/null >>"$WORK/out.log" 2>&1
) &
PID=$!
wait_for "$WORK/ready" 120
t_fill=$(echo "$(now) - $t0" | bc)

echo "== checkpoint of a ${MIB} MiB process (snaprun checkpoint --pid PID --image-path DIR --timings)"
t0=$(now)
"$SNAPRUN" checkpoint --pid "$PID" --image-path "$WORK/img" --timings
t_ckpt=$(echo "$(now) - $t0" | bc)
wait "$PID" 2>/dev/null || true
PID=
echo "image: $(du -sb "$WORK/img" | cut -f1) bytes on disk"

# restore_once THREADS: restores, lets the process verify every byte, and
# prints the wall time; THREADS restorer threads write the pages.
restore_once() {
    local t0 t pid result
    rm -f "$WORK/go" "$WORK/result"
    t0=$(now)
    pid=$(SNAPRUN_RESTORE_THREADS=$1 "$SNAPRUN" restore --image-path "$WORK/img" --timings 2>"$WORK/restore-$1.log" | tail -n 1)
    t=$(echo "$(now) - $t0" | bc)
    cat "$WORK/restore-$1.log" >&2
    touch "$WORK/go"
    wait_for "$WORK/result" 120
    result=$(cat "$WORK/result")
    [[ $result == PASS* ]] || { echo "bench: restored process (pid $pid) says: $result" >&2; exit 1; }
    echo "$t"
}
THREADS=$(nproc)
((THREADS > 8)) && THREADS=8
echo "== restore, pages written by 1 thread (SNAPRUN_RESTORE_THREADS=1 snaprun restore --image-path DIR --timings)"
t_rest1=$(restore_once 1)
echo "== restore, pages written by $THREADS threads (the default on this machine)"
t_rest=$(restore_once "$THREADS")

printf '\n%-40s %8.3f s\n' "fill ${MIB} MiB (process start to ready)" "$t_fill"
printf '%-40s %8.3f s  (%.2fx the fill)\n' "checkpoint (wall, incl. process)" "$t_ckpt" "$(echo "$t_ckpt / $t_fill" | bc -l)"
printf '%-40s %8.3f s  (%.2fx the fill)\n' "restore, 1 thread (wall)" "$t_rest1" "$(echo "$t_rest1 / $t_fill" | bc -l)"
printf '%-40s %8.3f s  (%.2fx the fill, %.2fx faster than 1 thread)\n' "restore, $THREADS threads (wall)" "$t_rest" "$(echo "$t_rest / $t_fill" | bc -l)" "$(echo "$t_rest1 / $t_rest" | bc -l)"
echo "each restored process verified every byte: PASS"
