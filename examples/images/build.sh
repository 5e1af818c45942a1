#!/bin/sh
# Builds lkb's bootable example images into examples/images/oci (an OCI image layout).
# Idempotent: lkb-fixtures skips the work when the layout's stamp matches the Debian packages
# and the generator code. Extra arguments are passed on (e.g. --force, --debs <dir>).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
exec cargo run -q -p lkb-tests --bin lkb-fixtures -- examples --out examples/images/oci "$@"
