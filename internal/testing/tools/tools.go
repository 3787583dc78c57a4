// Package tools finds the command-line tools the tests run (promtool, helm,
// promql-names), built from the Go module proxy at pinned versions by
// hack/build-tools.sh and cached under ${AUTHBRIDGE_CACHE:-~/.cache/authbridge-node}.
// `make test` builds them before `go test`, so here the script only prints
// the cached paths; run alone, a test waits for the build (the script takes
// a lock, so concurrent callers wait for one build).
package tools

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
)

// Paths returns each named tool's binary, in order.
func Paths(names ...string) ([]string, error) {
	root, err := apiserver.RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "hack", "build-tools.sh")}, names...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hack/build-tools.sh %s failed (needs the Go module proxy; make test builds the tools first): %w\n%s",
			strings.Join(names, " "), err, stderr.String())
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(names) {
		return nil, fmt.Errorf("hack/build-tools.sh %s printed %q, want one path per tool", strings.Join(names, " "), out)
	}
	return paths, nil
}

// Path returns one tool's binary.
func Path(name string) (string, error) {
	p, err := Paths(name)
	if err != nil {
		return "", err
	}
	return p[0], nil
}

// For returns one tool's binary for a test: it skips t under -short (a first
// build takes minutes; make test builds the tools before go test) and fails
// it when the tool cannot be found or built.
func For(t testing.TB, name string) string {
	t.Helper()
	testenv.Heavy(t, name+" built by hack/build-tools.sh")
	p, err := Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
