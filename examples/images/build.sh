#!/bin/sh
# Builds lkb's bootable example images into examples/images/oci (an OCI image layout).
# Idempotent: lkb-fixtures skips the work when the layout's stamp matches the Debian packages
# and the generator code. Extra arguments are passed on (e.g. --force, --debs <dir>).
# Uses lkb-fixtures from PATH when there is one, else builds it with cargo.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
if command -v lkb-fixtures >/dev/null 2>&1; then
  exec lkb-fixtures examples --out examples/images/oci "$@"
fi
exec cargo run -q -p lkb-tests --bin lkb-fixtures -- examples --out examples/images/oci "$@"
