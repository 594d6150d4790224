#!/bin/bash
# Set up a fresh Debian 12 machine (as root): system packages, then the project's venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
packages=(
    qemu-system-x86 linux-source-6.1 linux-source-6.12
    build-essential flex bison bc libelf-dev libssl-dev cpio ccache
    git xz-utils python3 python3-venv ca-certificates gawk e2fsprogs checkpolicy
    # the GitLab template test (tests/test_e2e_gitlab.py): gitlab-ci-local copies the
    # checkout with rsync, and comes from the npm registry
    rsync
)
# Debian 12's nodejs (18) and npm run gitlab-ci-local; a Node.js installed otherwise (with its
# own npm, which conflicts with Debian's npm package) is left as it is
if ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
fi
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
echo "setup done: run '.venv/bin/pipeline run' (main job) or '.venv/bin/python -m pytest' (tests)"
