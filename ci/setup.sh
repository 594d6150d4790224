#!/bin/bash
# Set up a fresh Debian 12 machine (as root): system packages, then the project's venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    qemu-system-x86 linux-source-6.1 linux-source-6.12 \
    build-essential flex bison bc libelf-dev libssl-dev cpio ccache \
    git xz-utils python3 python3-venv ca-certificates gawk e2fsprogs checkpolicy

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
echo "setup done: run '.venv/bin/pipeline run' (main job) or '.venv/bin/python -m pytest' (tests)"
