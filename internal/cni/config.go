package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// Conf is the plugin's stdin: the CNI keys, the plugin's conflist entry
// as the node agent writes it (pluginconf.Fields, policy inline), and the
// keys a runtime may inject. Each key is declared once: the CNI ones in
// types.PluginConf, ours in pluginconf.Fields, the runtime's in
// runtimeKeys.
type Conf struct {
	types.PluginConf
	pluginconf.Fields
	runtimeKeys
}

// runtimeKeys are spec-defined keys a runtime may inject.
type runtimeKeys struct {
	// RuntimeConfig and Args are accepted, unused.
	RuntimeConfig json.RawMessage `json:"runtimeConfig,omitempty"`
	Args          json.RawMessage `json:"args,omitempty"`
	// LegacyAttachments is the GC key's misspelt first name, which libcni
	// still injects next to cni.dev/valid-attachments (containernetworking/cni#1101).
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// plainPluginConf drops types.PluginConf's MarshalJSON (which would be
// promoted to Conf and marshal only the embedded part).
type plainPluginConf types.PluginConf

// MarshalJSON writes the whole config as a runtime would pass it (tests
// drive the plugin with it). The agent does not use it: it writes its
// conflist entry as a pluginconf.Entry.
func (c Conf) MarshalJSON() ([]byte, error) {
	pc := plainPluginConf(c.PluginConf)
	pc.PrevResult = nil
	b, err := json.Marshal(struct {
		plainPluginConf
		pluginconf.Fields
		runtimeKeys
	}{pc, c.Fields, c.runtimeKeys})
	if err != nil {
		return nil, err
	}
	// Drop an empty "dns": {} like types.PluginConf does.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if c.DNS.IsEmpty() {
		delete(m, "dns")
	}
	if c.IPAM.IsEmpty() {
		delete(m, "ipam")
	}
	return json.Marshal(m)
}

// ParseConfig decodes the plugin's stdin strictly: malformed JSON and unknown
// fields are CNI errors naming the field; the policy is defaulted and
// validated (cooperative mode needs its acknowledgement). prevResult, when
// present, is parsed into PrevResult.
func ParseConfig(stdin []byte) (*Conf, error) {
	if string(bytes.TrimSpace(stdin)) == "null" {
		return nil, types.NewError(types.ErrDecodingFailure, "authbridge-cni config: got JSON null", "the plugin's stdin must be one JSON object (the conflist entry plus the runtime's keys)")
	}
	stdin, err := expandEntryFile(stdin)
	if err != nil {
		return nil, err
	}
	if err := checkKeyCase(stdin); err != nil {
		return nil, err
	}
	var c Conf
	dec := json.NewDecoder(bytes.NewReader(stdin))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(err)
	}
	if dec.More() {
		return nil, types.NewError(types.ErrDecodingFailure, "authbridge-cni config: trailing data after the JSON object", "the plugin's stdin must be exactly one JSON object")
	}
	if c.Name == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni config field name: not set", "the CNI spec requires the network's name; the runtime copies it from the conflist's \"name\"")
	}
	if c.Type != "" && c.Type != pluginconf.PluginType {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field type: %q", c.Type), fmt.Sprintf("the plugin's conflist entry must have type %q", pluginconf.PluginType))
	}
	if c.LogFile == "" {
		c.LogFile = pluginconf.DefaultLogFile
	}
	if c.StateDir == "" {
		c.StateDir = pluginconf.DefaultStateDir
	}
	for name, p := range map[string]string{"logFile": c.LogFile, "stateDir": c.StateDir} {
		if !filepath.IsAbs(p) {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field %s: %q is not an absolute path", name, p), "use an absolute host path")
		}
	}
	if c.Kubeconfig != "" && !filepath.IsAbs(c.Kubeconfig) {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field kubeconfig: %q is not an absolute path", c.Kubeconfig), "use the absolute host path of the kubeconfig the node agent writes")
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(stdin, &raw) == nil {
		if err := config.RefuseExplicitZeros(raw); err != nil {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni config: "+err.Error(), "fix the authbridge node agent config; the agent rewrites this conflist entry")
		}
	}
	c.Policy = c.Policy.WithDefaults()
	if err := c.Policy.Validate(); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni config: "+err.Error(), "fix the authbridge node agent config; the agent rewrites this conflist entry")
	}
	return &c, nil
}

// expandEntryFile returns stdin with the entry file's keys in place of
// its entryFile key (the plugin as a Multus attachment, whose static
// NetworkAttachmentDefinition config names the file the node agent writes
// on each node). stdin without the key is returned unchanged; what is not
// a JSON object is left to the strict decoder to report. A key both in
// stdin and in the file is refused: the attachment's config carries the
// CNI keys only, the agent's file everything of ours.
func expandEntryFile(stdin []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(stdin, &m) != nil {
		return stdin, nil
	}
	raw, ok := m[pluginconf.EntryFileKey]
	if !ok {
		return stdin, nil
	}
	var path string
	if err := json.Unmarshal(raw, &path); err != nil || !filepath.IsAbs(path) {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field %s: %s is not an absolute path", pluginconf.EntryFileKey, raw),
			"name the file the node agent writes: credentialDir/"+pluginconf.EntryFileName+" (/var/lib/authbridge/"+pluginconf.EntryFileName+" by default)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field %s: %v", pluginconf.EntryFileKey, err),
			"the node agent writes this file when it runs with cniInstallMode multus-attachment (or auto on a Multus node); check that the agent runs and is ready on this node and that the NetworkAttachmentDefinition names its credentialDir")
	}
	var entry map[string]json.RawMessage
	if err := json.Unmarshal(data, &entry); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("authbridge-cni entry file %s: %v", path, err), "the node agent rewrites it at start; restart the agent on this node")
	}
	delete(m, pluginconf.EntryFileKey)
	for k, v := range entry {
		if k == "type" {
			continue
		}
		if _, dup := m[k]; dup {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field %s: set both next to %s and in %s", k, pluginconf.EntryFileKey, path),
				"the NetworkAttachmentDefinition's config carries only cniVersion, name, type and "+pluginconf.EntryFileKey+"; the rest comes from the agent's config")
		}
		m[k] = v
	}
	return json.Marshal(m)
}

// teardownConf is what DEL and GC need of the entry; nothing else is read.
type teardownConf struct {
	CNIVersion        string               `json:"cniVersion,omitempty"`
	Name              string               `json:"name,omitempty"`
	Type              string               `json:"type,omitempty"`
	LogFile           string               `json:"logFile,omitempty"`
	StateDir          string               `json:"stateDir,omitempty"`
	ValidAttachments  []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// ParseConfigLenient parses the config for DEL and GC. A conflist entry
// written by another agent version may carry keys or values this binary
// refuses; failing the DEL would leave pods stuck Terminating. So only what
// teardown reads (cniVersion, name, type, logFile, stateDir, the GC
// attachment lists) must be well-formed: malformed JSON or a non-object is
// an error (the runtime retries), while whatever the strict ParseConfig
// would refuse otherwise is returned as warn for a WARN log. The returned
// Conf carries the default policy.
func ParseConfigLenient(stdin []byte) (conf *Conf, warn error, err error) {
	if expanded, xerr := expandEntryFile(stdin); xerr != nil {
		// Teardown goes on with the defaults (the agent's default logFile
		// and stateDir) rather than leave the pod stuck Terminating.
		warn = xerr
		stdin = withoutEntryFile(stdin)
	} else {
		stdin = expanded
	}
	trimmed := bytes.TrimSpace(stdin)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "authbridge-cni config: not a JSON object", "the plugin's stdin must be one JSON object (the conflist entry plus the runtime's keys)")
	}
	var t teardownConf
	dec := json.NewDecoder(bytes.NewReader(stdin))
	if err := dec.Decode(&t); err != nil {
		return nil, nil, decodeError(err)
	}
	if dec.More() {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "authbridge-cni config: trailing data after the JSON object", "the plugin's stdin must be exactly one JSON object")
	}
	if t.LogFile == "" {
		t.LogFile = pluginconf.DefaultLogFile
	}
	if t.StateDir == "" {
		t.StateDir = pluginconf.DefaultStateDir
	}
	for name, p := range map[string]string{"logFile": t.LogFile, "stateDir": t.StateDir} {
		if !filepath.IsAbs(p) {
			return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config field %s: %q is not an absolute path", name, p), "use an absolute host path")
		}
	}
	c := &Conf{}
	c.LogFile, c.StateDir, c.LegacyAttachments, c.Policy = t.LogFile, t.StateDir, t.LegacyAttachments, config.Policy{}.WithDefaults()
	c.CNIVersion, c.Name, c.Type, c.ValidAttachments = t.CNIVersion, t.Name, t.Type, t.ValidAttachments
	if warn == nil {
		if _, serr := ParseConfig(stdin); serr != nil {
			warn = serr
		}
	}
	return c, warn, nil
}

// withoutEntryFile drops the entryFile key (teardown when the file cannot
// be read).
func withoutEntryFile(stdin []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(stdin, &m) != nil {
		return stdin
	}
	delete(m, pluginconf.EntryFileKey)
	out, err := json.Marshal(m)
	if err != nil {
		return stdin
	}
	return out
}

// decodeError names the offending field where encoding/json tells it.
func decodeError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	msg := err.Error()
	switch {
	case errors.As(err, &se):
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("authbridge-cni config: malformed JSON at byte %d: %v", se.Offset, err), "the plugin's stdin must be one JSON object (the conflist entry plus the runtime's keys)")
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return types.NewError(types.ErrDecodingFailure, "authbridge-cni config: malformed JSON: truncated or empty input", "the plugin's stdin must be one complete JSON object")
	case errors.As(err, &te):
		field := jsonField(te.Field)
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("authbridge-cni config field %s: got a JSON %s", field, te.Value), fmt.Sprintf("field %s must be %s", field, describeType(te.Type)))
	case strings.HasPrefix(msg, "json: unknown field "):
		field := strings.TrimPrefix(msg, "json: unknown field ")
		return types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni config: unknown field "+field, "remove it or check its spelling against the configuration table in README.md")
	default:
		return types.NewError(types.ErrDecodingFailure, "authbridge-cni config: "+msg, "the plugin's stdin must be one JSON object")
	}
}

// checkKeyCase refuses top-level keys that match a known key only when case
// is ignored: encoding/json would take "proxyUid" for "proxyUID" silently.
func checkKeyCase(stdin []byte) error {
	if k := config.UnknownKey(stdin, reflect.TypeFor[Conf]()); k != "" {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("authbridge-cni config: unknown field %q", k),
			"keys are case-sensitive; remove it or check its spelling against the configuration table in README.md")
	}
	return nil
}

// jsonField drops the embedded Go struct names encoding/json puts in the
// path ("Policy.proxyUID" -> "proxyUID").
func jsonField(f string) string {
	if f == "" {
		return "(top level)"
	}
	for _, p := range []string{"PluginConf.", "Fields.", "Policy.", "runtimeKeys."} {
		f = strings.TrimPrefix(f, p)
	}
	return f
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<(t.Bits())-1)
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(describeType(t.Elem()), "a ")
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	}
	return "a JSON " + t.String()
}

// K8sArgs are the CNI_ARGS a Kubernetes runtime passes.
type K8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// ParseK8sArgs reads CNI_ARGS; unknown keys are ignored (runtimes add their own).
func ParseK8sArgs(args string) (K8sArgs, error) {
	var a K8sArgs
	a.IgnoreUnknown = true
	if err := types.LoadArgs(args, &a); err != nil {
		return K8sArgs{}, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS %q: %v", args, err), "CNI_ARGS must be KEY=VALUE pairs separated by ';'")
	}
	return a, nil
}

// IsPod reports whether the args name a Kubernetes pod.
func (a K8sArgs) IsPod() bool {
	return a.K8S_POD_NAMESPACE != "" && a.K8S_POD_NAME != ""
}
