package cni

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogWriterCap writes 5 MB through the plugin's log writer capped at
// 1 MB with 2 backups: the live file never exceeds the cap, at most two
// rotated files remain (removed by the writer's background cleanup, hence
// the wait), and the newest lines are in the live file.
func TestLogWriterCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authbridge-cni.log")
	const mb = 1 << 20
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	for i := 0; i < 5; i++ { // one writer per "process", as each plugin run opens its own
		w := logWriter(path, 1, 2)
		for n := 0; n < mb/len(line); n++ {
			if _, err := w.Write(line); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Write([]byte("last line of run\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var files []os.DirEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		files = ents
		if len(files) <= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(files) > 3 {
		t.Fatalf("%d log files, want the live one and at most 2 backups", len(files))
	}
	var total int64
	for _, f := range files {
		fi, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > mb {
			t.Errorf("%s is %d bytes, over the 1 MB cap", f.Name(), fi.Size())
		}
		total += fi.Size()
	}
	if total > 3*mb {
		t.Errorf("log files total %d bytes, over (1+2) MB", total)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "last line of run\n") {
		t.Error("the live log does not end with the newest line")
	}
}
