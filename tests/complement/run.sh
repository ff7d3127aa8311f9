#!/bin/sh
# Runs one of Complement's test packages against matrixos processes, without Docker.
#
#   tests/complement/run.sh COMPLEMENT_DIR PACKAGE [test binary flags]
#
# COMPLEMENT_DIR is a checkout of github.com/matrix-org/complement; PACKAGE a
# directory under its tests/ (msc3902, csapi) or "." for tests/ itself. The
# flags go to the test binary: -test.run 'TestPartialStateJoin/NAME$'. See
# tests/complement/README.md.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 COMPLEMENT_DIR PACKAGE [test binary flags]" >&2
	exit 2
fi
complement=$(cd "$1" && pwd)
pkg=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
pkgdir=$complement/tests/$pkg
if [ ! -f "$pkgdir/main_test.go" ] || [ ! -f "$complement/test_main.go" ]; then
	echo "$pkgdir/main_test.go: not a Complement test package" >&2
	exit 2
fi

work=${MATRIXOS_COMPLEMENT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/matrixos-complement.XXXXXX")}
mkdir -p "$work"
echo "run.sh: servers' data and logs under $work" >&2

# matrixos from this checkout.
(cd "$repo" && GOEXPERIMENT=jsonv2 go build -tags goolm -o "$work/matrixos" ./cmd/matrixos)

# The deployment goes into the checkout as package matrixosrunner; the
# package's TestMain passes it to Complement. The original main_test.go is kept
# beside it as main_test.go.orig.
rm -rf "$complement/matrixosrunner"
mkdir "$complement/matrixosrunner"
cp "$here"/matrixosrunner/*.go "$complement/matrixosrunner/"
if [ ! -f "$pkgdir/main_test.go.orig" ]; then
	cp "$pkgdir/main_test.go" "$pkgdir/main_test.go.orig"
fi
name=$(sed -n 's/^package \([A-Za-z0-9_]*\).*/\1/p' "$pkgdir/main_test.go.orig" | head -n 1)
namespace=$(sed -n 's/.*complement\.TestMain(m, "\([^"]*\)".*/\1/p' "$pkgdir/main_test.go.orig" | head -n 1)
cat >"$pkgdir/main_test.go" <<EOF
// Written by Matrix OS's tests/complement/run.sh; the original is main_test.go.orig.

package $name

import (
	"testing"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/matrixosrunner"
)

func TestMain(m *testing.M) {
	complement.TestMain(m, "$namespace",
		complement.WithDeployment(matrixosrunner.Deploy),
		complement.WithCleanup(matrixosrunner.Cleanup))
}
EOF
(cd "$complement" && go test -c -o "$work/complement.test" "./tests/$pkg")

# Complement's own federation servers listen on loopback; the image name is
# never used but must be set. Tests that need Docker blueprints (OldDeploy)
# are skipped; a -test.skip given after PACKAGE replaces this one.
cd "$pkgdir"
export MATRIXOS_COMPLEMENT_BIN="$work/matrixos" MATRIXOS_COMPLEMENT_DIR="$work/servers"
export COMPLEMENT_BASE_IMAGE="${COMPLEMENT_BASE_IMAGE:-matrixos}" COMPLEMENT_HOSTNAME_RUNNING_COMPLEMENT=127.0.0.1
exec "$work/complement.test" -test.v \
	-test.skip '^(TestRoomSpecificUsernameChange|TestRoomSpecificUsernameAtJoin|TestJoinFederatedRoomFromApplicationServiceBridgeUser|TestJumpToDateEndpoint)$' \
	"$@"
