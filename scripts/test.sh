#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh), then runs every test of
# every crate. Tests that need root or the kernel (eBPF, AF_PACKET, network namespaces) skip
# with a message when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
