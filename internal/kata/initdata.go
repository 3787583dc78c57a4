package kata

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Initdata spec constants (CoCo trustee kbs/docs/initdata.md, as implemented
// by kata-containers src/libs/kata-types/src/initdata.rs).
const (
	InitdataVersion          = "0.1.0"
	DefaultInitdataAlgorithm = "sha384"

	InitdataKeyPolicy = "policy.rego"
	InitdataKeyAA     = "aa.toml"
	InitdataKeyCDH    = "cdh.toml"
)

// InitdataAlgorithms are the digest algorithms CoCo accepts.
var InitdataAlgorithms = []string{"sha256", "sha384", "sha512"}

// Initdata is a parsed initdata document.
type Initdata struct {
	Version   string            `toml:"version"`
	Algorithm string            `toml:"algorithm"`
	Data      map[string]string `toml:"data"`
}

// InitdataOptions selects what goes into an initdata document.
type InitdataOptions struct {
	// Policy is the agent policy (Rego); required, validated.
	Policy []byte
	// PolicyName names the policy in errors (a preset or the file name).
	PolicyName string
	// Algorithm is sha256, sha384 (default) or sha512.
	Algorithm string
	// AAToml and CDHToml are optional attestation-agent and
	// confidential-data-hub configurations, copied verbatim.
	AAToml, CDHToml []byte
}

// InitdataDocument is a built initdata document.
type InitdataDocument struct {
	// TOML is the raw document. Its digest is what attestation binds to, so
	// it must reach the guest byte for byte: use Annotation.
	TOML []byte
	// Annotation is gzip + standard base64 of TOML: the value of the pod
	// annotation AnnotationInitdata or of the peer-pods INITDATA key.
	Annotation string
	// Algorithm names the hash of Digest.
	Algorithm string
	// Digest is Algorithm(TOML).
	Digest []byte
}

// DigestHex is the hex form of Digest, as attestation policies compare it.
func (d *InitdataDocument) DigestHex() string { return hex.EncodeToString(d.Digest) }

// platformDigestLen is the size of the TEE evidence field the digest lands
// in: TDX MRCONFIGID (48), SNP HOSTDATA (32), CCA personalization value
// (64), IBM SE user data (256). Shorter digests are zero-padded, longer ones
// truncated (kata-types initdata.rs adjust_digest).
var platformDigestLen = map[string]int{"tdx": 48, "snp": 32, "cca": 64, "se": 256}

// PlatformDigest returns the digest as the named TEE reports it.
func (d *InitdataDocument) PlatformDigest(platform string) ([]byte, error) {
	n, ok := platformDigestLen[platform]
	if !ok {
		return nil, fmt.Errorf("unknown TEE platform %q: allowed values are tdx, snp, cca, se", platform)
	}
	out := make([]byte, n)
	copy(out, d.Digest)
	return out, nil
}

// BuildInitdata validates the policy (and the optional TOML configs) and
// renders the initdata document, its annotation value and digest.
func BuildInitdata(o InitdataOptions) (*InitdataDocument, error) {
	if o.Algorithm == "" {
		o.Algorithm = DefaultInitdataAlgorithm
	}
	if o.PolicyName == "" {
		o.PolicyName = InitdataKeyPolicy
	}
	if !slices.Contains(InitdataAlgorithms, o.Algorithm) {
		return nil, fmt.Errorf("initdata algorithm %q: allowed values are %s", o.Algorithm, strings.Join(InitdataAlgorithms, ", "))
	}
	if len(o.Policy) == 0 {
		return nil, fmt.Errorf("initdata needs a policy: choose a preset or --policy-file")
	}
	if err := ValidatePolicy(o.PolicyName, o.Policy); err != nil {
		return nil, err
	}
	data := map[string][]byte{InitdataKeyPolicy: o.Policy}
	for key, v := range map[string][]byte{InitdataKeyAA: o.AAToml, InitdataKeyCDH: o.CDHToml} {
		if len(v) == 0 {
			continue
		}
		var probe map[string]any
		if err := toml.Unmarshal(v, &probe); err != nil {
			return nil, fmt.Errorf("initdata %s is not valid TOML: %w", key, err)
		}
		data[key] = v
	}

	var b strings.Builder
	fmt.Fprintf(&b, "algorithm = %q\nversion = %q\n\n[data]\n", o.Algorithm, InitdataVersion)
	for _, key := range []string{InitdataKeyAA, InitdataKeyCDH, InitdataKeyPolicy} {
		if v, ok := data[key]; ok {
			fmt.Fprintf(&b, "%q = %s\n", key, tomlString(string(v)))
		}
	}
	raw := []byte(b.String())

	// Round trip before emitting: the guest parses exactly these bytes.
	back, err := ParseInitdata(raw)
	if err != nil {
		return nil, fmt.Errorf("internal: rendered initdata does not parse: %w", err)
	}
	for k, v := range data {
		if back.Data[k] != string(v) {
			return nil, fmt.Errorf("internal: initdata %s does not survive TOML encoding", k)
		}
	}

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip initdata: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip initdata: %w", err)
	}
	h := newHash(o.Algorithm)
	h.Write(raw)
	return &InitdataDocument{
		TOML:       raw,
		Annotation: base64.StdEncoding.EncodeToString(gz.Bytes()),
		Algorithm:  o.Algorithm,
		Digest:     h.Sum(nil),
	}, nil
}

func newHash(alg string) hash.Hash {
	switch alg {
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	default:
		return sha512.New384()
	}
}

// ParseInitdata parses a raw initdata document and checks version and
// algorithm the way the Kata agent does.
func ParseInitdata(raw []byte) (*Initdata, error) {
	var d Initdata
	if err := toml.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("initdata is not valid TOML: %w", err)
	}
	if d.Version != InitdataVersion {
		return nil, fmt.Errorf("initdata version %q: only %q is supported", d.Version, InitdataVersion)
	}
	if !slices.Contains(InitdataAlgorithms, d.Algorithm) {
		return nil, fmt.Errorf("initdata algorithm %q: allowed values are %s", d.Algorithm, strings.Join(InitdataAlgorithms, ", "))
	}
	return &d, nil
}

// DecodeInitdataAnnotation reverses Annotation: base64, gunzip, parse. It
// returns the raw document too, whose digest attestation binds to.
func DecodeInitdataAnnotation(value string) (*Initdata, []byte, error) {
	gz, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, nil, fmt.Errorf("initdata annotation is not standard base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, nil, fmt.Errorf("initdata annotation is not gzip: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("gunzip initdata annotation: %w", err)
	}
	d, err := ParseInitdata(raw)
	if err != nil {
		return nil, nil, err
	}
	return d, raw, nil
}

// tomlString renders s as a TOML multi-line literal string (readable in the
// decoded document) when it can, else as an escaped basic string.
func tomlString(s string) string {
	literalOK := !strings.Contains(s, "'''") && !strings.HasSuffix(s, "'")
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f {
			literalOK = false
			break
		}
	}
	if literalOK {
		// The newline after the opening delimiter is not part of the value.
		return "'''\n" + s + "'''"
	}
	return tomlBasicString(s)
}

// tomlBasicString renders s as a one-line TOML basic string.
func tomlBasicString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
