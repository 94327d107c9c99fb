#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts what the tests need,
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis: the cluster's live stream between nodes is tested against a real redis-server.
SUDO=
command -v redis-server >/dev/null || { sudo -n true 2>/dev/null && SUDO=sudo; ${SUDO:-} apt-get update -qq && ${SUDO:-} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

cargo test --workspace
