#!/usr/bin/env bash
# Installs what berth's benchmarks need beyond the Rust toolchain and the test
# dependencies, from Debian's packages, and only what is missing:
#   etcd  etcd-server (3.4), the baseline of the replicated-writes benchmark
#         (crates/store/benches/replicated.rs), which runs a 3-member etcd
#         cluster beside berth's managers
# Idempotent: with everything present it installs nothing and needs no root.
# Otherwise it refreshes apt's package lists, then installs the missing
# packages.
set -euo pipefail

# A command and the package that provides it.
needs=(
  "etcd etcd-server"
)

# Found in PATH or where Debian puts it (a non-root PATH may lack sbin).
have() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]
}

missing=()
for pair in "${needs[@]}"; do
  read -r cmd pkg <<<"$pair"
  if ! have "$cmd" && [[ " ${missing[*]-} " != *" $pkg "* ]]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-bench-deps: nothing to install"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install-bench-deps: missing ${missing[*]}; run this script as root (or with sudo) to install them" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-bench-deps: missing ${missing[*]}, and there is no apt-get here to install them" >&2
  exit 1
fi

echo "install-bench-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
# Debian's etcd-server package only ships the binary and a systemd unit; in a
# container without systemd nothing starts, and the benchmark starts its own
# members in temporary directories either way.
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
