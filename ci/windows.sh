#!/usr/bin/env bash
# Windows (under Wine) and macOS (type-check) CI for the whole workspace, on a Debian 12
# x86_64 host. Runnable by hand from anywhere: `ci/windows.sh`. Idempotent: installs
# what is missing (MinGW, Wine 8, the rustup targets), creates the Wine prefix once.
#
#   1. the seed's C programs and sync_peer (interop/) built with MinGW, for the interop tests
#   2. cargo test --workspace for x86_64-pc-windows-gnu, every test binary under Wine
#   3. cargo clippy --workspace --all-targets for that target, -D warnings
#   4. cargo check --workspace --all-targets for aarch64- and x86_64-apple-darwin
#
# The Python package (crates/shmipc-py) is left out of step 2: linking it for Windows
# needs a Windows Python's python3.lib, and none is here (it is built and tested
# natively by .ci/run). Clippy and the macOS checks cover it: PYO3_CROSS_PYTHON_VERSION
# lets PyO3 type-check for another OS without a Python of that OS.
#
# Environment: WINEPREFIX (default ~/.cache/shmipc-wine), STEP_TIMEOUT (seconds per
# cargo step, default 1200). Needs root or passwordless sudo only to install packages.
# See shared notes on Wine: a bare "exit status: 53" means a DLL failed to load; rerun
# with WINEDEBUG=err+module to see which.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STEP_TIMEOUT=${STEP_TIMEOUT:-1200}
start=$(date +%s)
step() { printf '\n--- windows.sh: %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

# --- packages: MinGW (linker, dlltool, gcc for interop/) and 64-bit Wine 8
step "packages"
PKGS="gcc-mingw-w64-x86-64 wine64 wine"
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=
for p in $PKGS; do
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] || missing=1
done
if [ -n "$missing" ]; then
  timeout 600 $SUDO apt-get update -qq
  timeout 900 $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi

# --- rustup targets: windows-gnu to build and test, apple to type-check
step "rustup targets"
installed=$(rustup target list --installed)
for t in x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin; do
  grep -qx "$t" <<<"$installed" || timeout 600 rustup -q target add "$t"
done
rustup component list --installed | grep -q '^clippy' || rustup -q component add clippy

# --- a headless Wine prefix, made once and reused
step "wine prefix"
export WINEPREFIX="${WINEPREFIX:-$HOME/.cache/shmipc-wine}" WINEARCH=win64
export WINEDEBUG="${WINEDEBUG:--all}" WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono/Gecko
unset DISPLAY WAYLAND_DISPLAY
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT   # never leave wineserver or tests behind
if [ ! -f "$WINEPREFIX/.shmipc-ready" ]; then
  mkdir -p "$(dirname "$WINEPREFIX")"   # wine creates the prefix, not its parent
  timeout 300 wine wineboot -i </dev/null >/dev/null 2>&1 || { echo "wineboot failed" >&2; exit 1; }
  SYS32="$WINEPREFIX/drive_c/windows/system32"
  # Rust std >= 1.78 imports bcryptprimitives.dll!ProcessPrng, which Wine < 9 lacks:
  # every Rust .exe would die at load with exit status 53. A tiny shim provides it.
  if [ ! -f "$SYS32/bcryptprimitives.dll" ]; then
    cat > "$WINEPREFIX/bcryptprimitives.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID, ULONG); /* RtlGenRandom */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
    while (n) { ULONG k = n > 0x40000000 ? 0x40000000 : (ULONG)n;
                if (!SystemFunction036(p, k)) return FALSE; p += k; n -= k; }
    return TRUE;
}
C
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$SYS32/bcryptprimitives.dll" \
      "$WINEPREFIX/bcryptprimitives.c" -ladvapi32
  fi
  timeout 120 wine winecfg -v win10 </dev/null >/dev/null 2>&1   # a fresh prefix says Windows 7
  timeout 60 wineserver -w                                       # let it save the registry
  touch "$WINEPREFIX/.shmipc-ready"
fi
# One wineserver for the whole run (tests share its object namespace, as on Windows).
wineserver -p 600 </dev/null >/dev/null 2>&1 || true

# --- the seed's programs, for crates/shmipc/tests/windows.rs
step "interop: the seed's C programs (MinGW)"
INTEROP_OUT="$ROOT/target/interop"
mkdir -p "$INTEROP_OUT"
for p in process1 process2 sync_peer; do
  x86_64-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -municode \
    -o "$INTEROP_OUT/$p.exe" "interop/$p.c"
done
SHMIPC_INTEROP_DIR=$(winepath -w "$INTEROP_OUT" 2>/dev/null)
export SHMIPC_INTEROP_DIR SHMIPC_REQUIRE_INTEROP=1

# --- the workspace's tests (unit, integration, doc) as Windows binaries under Wine
step "cargo test --workspace --target x86_64-pc-windows-gnu (under wine)"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
timeout "$STEP_TIMEOUT" cargo test --workspace --exclude shmipc-py --target x86_64-pc-windows-gnu </dev/null
# Small CI disks (see .ci/run): each target's build dir goes once its step is done.
reclaim() { if [ -n "${CI:-}" ]; then rm -rf "$@"; fi; }
reclaim target/x86_64-pc-windows-gnu

export PYO3_CROSS_PYTHON_VERSION="${PYO3_CROSS_PYTHON_VERSION:-3.11}"  # crates/shmipc-py
step "cargo clippy --workspace --all-targets --target x86_64-pc-windows-gnu"
timeout "$STEP_TIMEOUT" cargo clippy --workspace --all-targets --target x86_64-pc-windows-gnu \
  -- -D warnings </dev/null

# --- macOS: type-check only (no Apple SDK or linker here)
for t in aarch64-apple-darwin x86_64-apple-darwin; do
  step "cargo check --workspace --all-targets --target $t"
  timeout "$STEP_TIMEOUT" cargo check --workspace --all-targets --target "$t" </dev/null
  reclaim "target/$t"
done

step "windows.sh done"
