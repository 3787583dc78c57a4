package kata

import (
	"bytes"
	"crypto/sha512"
	"os/exec"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/policy"
)

func TestInitdataRoundTripEveryPreset(t *testing.T) {
	for _, name := range policy.Presets {
		src, err := policy.Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := BuildInitdata(InitdataOptions{Policy: src, PolicyName: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, raw, err := DecodeInitdataAnnotation(doc.Annotation)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !bytes.Equal(raw, doc.TOML) {
			t.Errorf("%s: decoded document differs from the built one", name)
		}
		if got.Version != "0.1.0" || got.Algorithm != "sha384" {
			t.Errorf("%s: version/algorithm = %q/%q", name, got.Version, got.Algorithm)
		}
		if got.Data["policy.rego"] != string(src) {
			t.Errorf("%s: policy.rego does not round-trip byte for byte", name)
		}
		if len(got.Data) != 1 {
			t.Errorf("%s: data keys %v, want only policy.rego", name, got.Data)
		}
		// The digest attestation binds to: sha384 over the raw TOML bytes.
		want := sha512.Sum384(raw)
		if !bytes.Equal(doc.Digest, want[:]) {
			t.Errorf("%s: digest %x, want sha384(document) %x", name, doc.Digest, want)
		}
	}
}

// Decode with Debian's base64 and gzip, as an admin would check by hand.
func TestInitdataDecodesWithDebianTools(t *testing.T) {
	doc, err := BuildInitdata(InitdataOptions{Policy: policy.Restrictive()})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "base64 -d | gzip -dc")
	cmd.Stdin = strings.NewReader(doc.Annotation)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("base64 -d | gzip -dc: %v", err)
	}
	if !bytes.Equal(out, doc.TOML) {
		t.Fatalf("Debian tools decode a different document:\n%s", out)
	}
	if !strings.HasPrefix(string(out), "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n\"policy.rego\" = '''\n") {
		t.Errorf("unexpected document head:\n%.200s", out)
	}
}

func TestInitdataWithAAAndCDHAndAlgorithms(t *testing.T) {
	aa := []byte("[token_configs]\n[token_configs.kbs]\nurl = 'https://kbs.example:8080'\n")
	cdh := []byte("socket = 'unix:///run/confidential-containers/cdh.sock'\ncredentials = []\n\n[kbc]\nname = 'cc_kbc'\nurl = 'https://kbs.example:8080'\n")
	for alg, size := range map[string]int{"sha256": 32, "sha384": 48, "sha512": 64} {
		doc, err := BuildInitdata(InitdataOptions{Policy: policy.Restrictive(), Algorithm: alg, AAToml: aa, CDHToml: cdh})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if len(doc.Digest) != size {
			t.Errorf("%s: digest is %d bytes, want %d", alg, len(doc.Digest), size)
		}
		got, _, err := DecodeInitdataAnnotation(doc.Annotation)
		if err != nil {
			t.Fatal(err)
		}
		if got.Algorithm != alg || got.Data["aa.toml"] != string(aa) || got.Data["cdh.toml"] != string(cdh) {
			t.Errorf("%s: round trip lost data: %+v", alg, got)
		}
	}
	doc, _ := BuildInitdata(InitdataOptions{Policy: policy.Restrictive()})
	for p, n := range map[string]int{"tdx": 48, "snp": 32} {
		d, err := doc.PlatformDigest(p)
		if err != nil || len(d) != n || !bytes.Equal(d[:min(n, 48)], doc.Digest[:min(n, 48)]) {
			t.Errorf("PlatformDigest(%s) = %x, %v", p, d, err)
		}
	}
	if _, err := doc.PlatformDigest("sgx"); err == nil {
		t.Error("PlatformDigest(sgx) succeeded")
	}
}

// A policy TOML cannot carry as a literal string still round-trips.
func TestInitdataEscapedPolicy(t *testing.T) {
	src := []byte("package agent_policy\n\nimport rego.v1\n\n# a ''' quote and a \\ backslash\nmsg := \"tab\\there\"\n\ndefault ExecProcessRequest := false\n")
	doc, err := BuildInitdata(InitdataOptions{Policy: src})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := DecodeInitdataAnnotation(doc.Annotation)
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["policy.rego"] != string(src) {
		t.Fatalf("escaped policy does not round-trip: %q", got.Data["policy.rego"])
	}
}

func TestInitdataRefusesBadInput(t *testing.T) {
	cases := map[string]struct {
		o    InitdataOptions
		want string
	}{
		"syntax error":      {InitdataOptions{Policy: []byte("package agent_policy\n\ndefault ExecProcessRequest := \n")}, "does not parse"},
		"wrong package":     {InitdataOptions{Policy: []byte("package kata\n\ndefault ExecProcessRequest := false\n")}, "package agent_policy"},
		"v0 rule syntax":    {InitdataOptions{Policy: []byte("package agent_policy\n\nExecProcessRequest { true }\n")}, "does not parse as Rego v1"},
		"regorus lacks net": {InitdataOptions{Policy: []byte("package agent_policy\n\nimport rego.v1\n\nUpdateRoutesRequest if net.cidr_contains(\"10.0.0.0/8\", input.x)\n")}, "net.cidr_contains, which the Kata agent's regorus"},
		"compile error":     {InitdataOptions{Policy: []byte("package agent_policy\n\nimport rego.v1\n\nExecProcessRequest if undefined_fn(1)\n")}, "does not compile"},
		"empty":             {InitdataOptions{}, "needs a policy"},
		"algorithm":         {InitdataOptions{Policy: policy.Restrictive(), Algorithm: "md5"}, "sha256, sha384, sha512"},
		"aa.toml":           {InitdataOptions{Policy: policy.Restrictive(), AAToml: []byte("[token_configs\n")}, "aa.toml is not valid TOML"},
	}
	for name, c := range cases {
		_, err := BuildInitdata(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
	// regorus 0.9.1 parses Rego v1 by default: `import rego.v1` is not needed.
	if _, err := BuildInitdata(InitdataOptions{Policy: []byte("package agent_policy\n\ndefault ExecProcessRequest := false\n\nCopyFileRequest if input.x == 1\n")}); err != nil {
		t.Errorf("Rego v1 without `import rego.v1` refused: %v", err)
	}
}

func TestDecodeRefusesBadAnnotation(t *testing.T) {
	for _, v := range []string{"not base64!", "aGVsbG8=" /* not gzip */} {
		if _, _, err := DecodeInitdataAnnotation(v); err == nil {
			t.Errorf("DecodeInitdataAnnotation(%q) succeeded", v)
		}
	}
}
