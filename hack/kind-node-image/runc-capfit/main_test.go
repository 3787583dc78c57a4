package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestFitCapsConfigAndProcess(t *testing.T) {
	dir := t.TempDir()
	caps := map[string]any{
		"bounding":  []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"},
		"effective": []string{"CAP_SYS_RESOURCE"},
	}
	cfg := filepath.Join(dir, "config.json")
	proc := filepath.Join(dir, "process.json")
	write := func(p string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, map[string]any{"ociVersion": "1.0.2", "process": map[string]any{"capabilities": caps, "cwd": "/"}})
	write(proc, map[string]any{"capabilities": caps, "cwd": "/"})
	miss := map[string]bool{"CAP_SYS_RESOURCE": true}
	if err := fitCaps(cfg, false, miss); err != nil {
		t.Fatal(err)
	}
	if err := fitCaps(proc, true, miss); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"bounding": []any{"CAP_CHOWN", "CAP_NET_ADMIN"}, "effective": []any{}}
	for _, c := range []struct {
		file    string
		process bool
	}{{cfg, false}, {proc, true}} {
		b, _ := os.ReadFile(c.file)
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		p := doc
		if !c.process {
			p = doc["process"].(map[string]any)
			if doc["ociVersion"] != "1.0.2" {
				t.Errorf("%s: other fields lost: %v", c.file, doc)
			}
		}
		if got := p["capabilities"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: capabilities %v, want %v", c.file, got, want)
		}
		if p["cwd"] != "/" {
			t.Errorf("%s: cwd lost", c.file)
		}
	}
}

func TestFitCapsLeavesFileAloneWhenNothingMissing(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config.json")
	orig := []byte(`{"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}},   "x": 1}`)
	if err := os.WriteFile(f, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fitCaps(f, false, map[string]bool{"CAP_SYS_RESOURCE": true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != string(orig) {
		t.Fatalf("file rewritten although no capability was dropped: %s", b)
	}
}

func TestMissingCapsReadsOwnBoundingSet(t *testing.T) {
	miss, err := missingCaps()
	if err != nil {
		t.Fatal(err)
	}
	// CAP_CHOWN is in every root process's bounding set, here and in CI.
	if miss["CAP_CHOWN"] {
		t.Fatalf("CAP_CHOWN reported missing: %v", miss)
	}
}

func TestFitOOMScoreAdjRaisesOnlyLowerValues(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		in   string
		want float64
	}{
		{`{"process": {"oomScoreAdj": -997}}`, 0},
		{`{"process": {"oomScoreAdj": 1000}}`, 1000},
		{`{"process": {"oomScoreAdj": 0}}`, 0},
	} {
		f := filepath.Join(dir, "config.json")
		if err := os.WriteFile(f, []byte(c.in), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := fitOOMScoreAdj(f, 0); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Process struct {
				OOMScoreAdj *float64 `json:"oomScoreAdj"`
			} `json:"process"`
		}
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &doc); err != nil || doc.Process.OOMScoreAdj == nil || *doc.Process.OOMScoreAdj != c.want {
			t.Errorf("%s -> %s, want oomScoreAdj %v", c.in, b, c.want)
		}
	}
	// no oomScoreAdj: left alone
	f := filepath.Join(dir, "none.json")
	orig := `{"process": {"args": ["x"]}}`
	if err := os.WriteFile(f, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fitOOMScoreAdj(f, 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != orig {
		t.Errorf("rewritten without oomScoreAdj: %s", b)
	}
}
