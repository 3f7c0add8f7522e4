#!/bin/bash
# Runs snaprun's GPU test or benchmark on a machine with an NVIDIA GPU
# (driver 570 or newer) and PyTorch, with a prebuilt snaprun binary:
#
#   bash scripts/gpu/run.sh test  SNAPRUN [--size 1b|8b] [--keep]
#   bash scripts/gpu/run.sh bench SNAPRUN [--size 1b|8b] [--json FILE] [--keep]
#
# As root (snaprun needs ptrace and PR_SET_MM). SNAPRUN_GPU_PYTHON picks the
# Python that has torch (default: python3). See docs/gpu.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
(($# >= 2)) || usage
what=$1
snaprun=$2
shift 2
case $what in
test | bench) ;;
*) usage ;;
esac
py=${SNAPRUN_GPU_PYTHON:-python3}

[[ -x $snaprun ]] || {
    echo "gpu: $snaprun is not an executable snaprun" >&2
    exit 2
}
command -v nvidia-smi >/dev/null || {
    echo "gpu: no nvidia-smi: not a GPU machine" >&2
    exit 2
}
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "gpu: $py has no torch with CUDA" >&2
    exit 2
}
echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n1)," \
    "torch $("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')," \
    "$("$snaprun" --version)" >&2
exec "$py" "$here/$what.py" "$snaprun" "$@"
