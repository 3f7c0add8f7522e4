#!/bin/bash
# The snapshot store's figures in one run: checkpoint write throughput with
# and without compression, the compression ratio on a real model's weights
# (the MiniLM safetensors that scripts/setup.sh installs), and restore read
# throughput per tier (disk, RAM, and S3 through s3s-fs on loopback).
#   bash scripts/bench-store.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SNAPRUN_VENV:-$PWD/.venv}
FILE=${1:-$VENV/share/all-MiniLM-L6-v2/model.safetensors}
[[ -f $FILE ]] || { echo "bench-store: no $FILE (run scripts/setup.sh)" >&2; exit 1; }
command -v s3s-fs >/dev/null || { echo "bench-store: no s3s-fs (run scripts/setup.sh)" >&2; exit 1; }
cargo build --release -q -p snaprun-runtime
SNAPRUN=$PWD/target/release/snaprun
WORK=$(mktemp -d /tmp/snaprun-bench-store.XXXXXX)
S3PID=
cleanup() {
    if [[ -n $S3PID ]]; then kill "$S3PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/s3/bench"
RUST_LOG=info NO_COLOR=1 s3s-fs --host 127.0.0.1 --port 0 \
    --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3.log" 2>&1 &
S3PID=$!
url=
for _ in $(seq 200); do
    url=$(grep -o 'server is running at http://[0-9.:]*' "$WORK/s3.log" | awk '{print $5}' || true)
    [[ -n $url ]] && break
    sleep 0.05
done
[[ -n $url ]] || { echo "bench-store: s3s-fs did not start" >&2; cat "$WORK/s3.log" >&2; exit 1; }

AWS_ENDPOINT_URL=$url AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
    "$SNAPRUN" bench store --file "$FILE" --work-dir "$WORK" --remote s3://bench/store
