#!/usr/bin/env bash
# Installs what httpscope's tests and benchmarks use on a fresh Debian machine. Idempotent:
# only missing packages are installed. The build itself needs nothing beyond cargo (the eBPF
# objects are committed; clang is only needed to change them).
set -euo pipefail

packages=(
  curl          # clients in end-to-end tests
  nginx-light   # a real third-party server for the eBPF and packet tests
  wrk           # bounded load in tests and overhead benchmarks
  prometheus    # the real scraper the Prometheus exporter is tested against
  bpftool       # checks that no BPF program or map is left after a capture
  iproute2      # network namespaces for packet tests
  ethtool       # turns offloads off on test interfaces
  tcpdump       # captures made by tests, and the benchmark floor
  tshark        # the side-by-side baseline in BENCHMARKS.md
  gnutls-bin    # a GnuTLS client for TLS tests
  openssl       # test certificates
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: not root, cannot install: ${missing[*]} (tests that need them will skip and say so)" >&2
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts nginx on port 80 when installing it; tests run their own instances.
if command -v nginx >/dev/null && [ -f /run/nginx.pid ]; then nginx -s stop 2>/dev/null || true; fi
