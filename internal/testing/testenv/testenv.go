// Package testenv says which tests can run where. `go test -short ./...` as
// an ordinary user runs every pure test in seconds; the tests that need root
// (network namespaces, netfilter) skip there with the reason. make test runs
// as root without -short, and fails when any test skipped (hack/test.sh), so a
// skip is never counted as a pass where the real thing can run.
package testenv

import (
	"os"
	"testing"
)

// Root skips t under -short, or when not running as root. what says what
// the test does that needs root ("network namespaces", "chown"), for the skip
// line.
func Root(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root (" + what + "): not run under -short; make test runs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (" + what + "): run as root, as make test does")
	}
}

// Heavy skips t under -short: the test needs something that takes long to
// build or start (a kube-apiserver, a qemu guest, a go build of binaries).
func Heavy(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs " + what + ": not run under -short; make test runs it")
	}
}
