#!/usr/bin/env bash
# Installs what berth's tests need beyond the Rust toolchain, from Debian's
# packages, and only what is missing:
#   iptables  the partition test's firewall rules (crates/berth/tests/it/partition.rs)
#   iproute2  ip and ss, to look at the test clusters' addresses and sockets
#   slapd     OpenLDAP's server, which the auth worker's tests start on their
#             own port and directory (crates/authworker/tests/it/slapd.rs)
#   ldap-utils  ldapsearch and friends, to look into such a directory by hand
#   curl, unzip  a client bundle used as its docs say (crates/berth/tests/it/identity.rs)
#   skopeo, umoci  real registry clients: umoci builds an OCI image layout,
#             skopeo pushes and pulls it (crates/registry/tests/it/clients.rs)
# Idempotent: with everything present it installs nothing, and then needs no
# root. `.ci/run` calls it before the tests.
set -euo pipefail

# A command and the package that provides it.
needs=(
  "iptables iptables"
  "ip iproute2"
  "ss iproute2"
  "slapd slapd"
  "ldapsearch ldap-utils"
  "curl curl"
  "unzip unzip"
  "skopeo skopeo"
  "umoci umoci"
)

# Found in PATH or in the sbin directories a non-root PATH often lacks.
have() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing=()
for pair in "${needs[@]}"; do
  read -r cmd pkg <<<"$pair"
  if ! have "$cmd" && [[ " ${missing[*]-} " != *" $pkg "* ]]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install-test-deps: missing ${missing[*]}; run this script as root (or with sudo) to install them" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: missing ${missing[*]}, and there is no apt-get here to install them" >&2
  exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

# Debian's slapd starts a system server on port 389 where services may be
# started. The tests run slapd of their own and need none: stop the one
# this install started (a slapd that was here before is not ours to stop).
if [[ " ${missing[*]} " == *" slapd "* ]]; then
  "${as_root[@]}" service slapd stop >/dev/null 2>&1 || true
fi
