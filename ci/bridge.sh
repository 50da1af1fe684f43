#!/usr/bin/env bash
# CI for crates/shmipc-bridge, its own workspace (zenoh stays out of the main one and
# its Windows/Wine run): fmt, clippy, docs, and the two-host tests, which run the
# main workspace's `shmipc` CLI, network namespaces (skipped with a message where
# `ip netns` is not permitted) and a Python client of eclipse-zenoh.
# Idempotent: installs iproute2 and a venv with eclipse-zenoh only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MANIFEST=crates/shmipc-bridge/Cargo.toml
ZENOH_PY=1.10.2   # eclipse-zenoh, the same version as the zenoh crate in Cargo.lock
start=$(date +%s)
step() { printf '\n--- bridge.sh: %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo

step "packages: iproute2"
if ! command -v ip >/dev/null; then
  timeout 600 $SUDO apt-get update -qq
  timeout 600 $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

step "python: a venv with eclipse-zenoh $ZENOH_PY"
VENV=$ROOT/target/bridge-venv
PY=$VENV/bin/python
if ! "$PY" -c "import zenoh" 2>/dev/null; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    timeout 600 $SUDO apt-get update -qq
    timeout 600 $SUDO env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  timeout 600 "$PY" -m pip install -q --disable-pip-version-check "eclipse-zenoh==$ZENOH_PY"
fi
export SHMIPC_BRIDGE_PYTHON=$PY SHMIPC_REQUIRE_PYTHON=1

step "the shmipc CLI the tests run"
cargo build --quiet -p shmipc-cli
export SHMIPC_CLI=$ROOT/target/debug/shmipc

step "cargo fmt --check (bridge)"
cargo fmt --manifest-path "$MANIFEST" -- --check

step "cargo clippy (bridge)"
cargo clippy --manifest-path "$MANIFEST" --all-targets -- -D warnings

step "cargo doc (bridge)"
RUSTDOCFLAGS="-D warnings" cargo doc --manifest-path "$MANIFEST" --no-deps --quiet
if [ -n "${CI:-}" ]; then   # small CI disks: clippy's output is not reused by the tests
  rm -rf crates/shmipc-bridge/target/debug crates/shmipc-bridge/target/doc
fi

step "cargo test (bridge)"
cargo test --manifest-path "$MANIFEST"

step "bridge.sh done"
