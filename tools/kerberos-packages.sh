#!/usr/bin/env bash
# MIT Kerberos from the distribution, for `make servers-secure` and the secure tests: the
# KDC (krb5-kdc, krb5-admin-server's kadmin.local), kinit/klist (krb5-user) and the headers
# python-gssapi builds against (libkrb5-dev). Idempotent and quiet: it installs only what
# is missing, and needs root (CI runs as root) only when something is.
set -euo pipefail
need=()
[ -x /usr/sbin/krb5kdc ] || command -v krb5kdc >/dev/null || need+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || command -v kadmin.local >/dev/null || need+=(krb5-admin-server)
command -v kinit >/dev/null || need+=(krb5-user)
command -v krb5-config >/dev/null || need+=(libkrb5-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "kerberos-packages: missing ${need[*]}: install them as root (Debian/Ubuntu names;" \
       "other systems: MIT Kerberos 1.18+ with its KDC and development headers)" >&2
  exit 1
fi
echo "kerberos-packages: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# noninteractive: the KDC packages would ask for a default realm. The secure servers never
# use the system's KDC or /etc/krb5.conf: they run their own KDC on loopback.
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
