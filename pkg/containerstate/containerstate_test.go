package containerstate

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func TestRecordFiles(t *testing.T) {
	dir := t.TempDir()
	spec := redirect.DefaultSpec(redirect.IPv4, redirect.IPv6)
	s := Record{ContainerID: "abc", Mode: "enforce-redirect", Backend: redirect.BackendNFTables, Spec: &spec}
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir, "abc")
	if err != nil || got == nil || got.Backend != s.Backend || !reflect.DeepEqual(got.Spec.Families, spec.Families) {
		t.Fatalf("read back %+v %v", got, err)
	}
	if _, err := Read(dir, "../escape"); err == nil {
		t.Fatal("container ID with a path accepted")
	}
	if got, err := Read(dir, "missing"); got != nil || err != nil {
		t.Fatalf("missing record: %+v %v", got, err)
	}
	if err := Remove(dir, "abc"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, "abc"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := filepath.Glob(filepath.Join(dir, Dir, "*")); err != nil {
		t.Fatal(err)
	}
}
