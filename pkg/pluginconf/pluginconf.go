// Package pluginconf is the plugin's entry in the node's CNI conflist: the
// node agent writes it (Entry), the CNI plugin reads it back as part of its
// stdin (cni.Conf embeds Fields). Defined once here, with the plugin's type
// and default paths, so the writer and the reader cannot drift.
package pluginconf

import "github.com/kagenti/authbridge-node/pkg/config"

// PluginType is the "type" of the plugin's conflist entry and the plugin
// binary's file name. An entry with this type is ours: the agent's
// installer replaces it, uninstall removes it.
const PluginType = "authbridge-cni"

// DefaultLogFile is where the plugin logs on the host when the entry names
// no logFile.
const DefaultLogFile = "/var/log/authbridge-cni.log"

// DefaultStateDir is the plugin's state dir when the entry names none: the
// agent's default state dir, where node-state.json, plugin-events.sock
// and containers/ live.
const DefaultStateDir = config.DefaultStateDir

// Fields are the plugin's own keys in its conflist entry; the policy
// fields (defaultMode, allowCooperative, backends, proxyUID, ...) are
// inline, exactly as in the agent's config.
type Fields struct {
	// Kubeconfig is the kubeconfig the plugin reads pods with (a host path).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// LogFile receives the plugin's JSON logs (stdout is the CNI protocol's).
	LogFile string `json:"logFile,omitempty"`
	// StateDir holds node-state.json, plugin-events.sock and containers/.
	StateDir string `json:"stateDir,omitempty"`

	config.Policy
}

// Entry is the conflist entry as the node agent writes it; the runtime
// adds cniVersion and name from the conflist when it runs the plugin.
type Entry struct {
	Type string `json:"type"`
	Fields
}

// New is the entry of type PluginType with fields f.
func New(f Fields) Entry { return Entry{Type: PluginType, Fields: f} }

// The plugin as a Multus attachment (cniInstallMode multus-attachment):
// the NetworkAttachmentDefinition's config is static (a manifest, the same
// on every node), so it carries only the CNI keys and EntryFileKey naming
// the file where the node agent writes this node's Entry. The plugin reads
// that file and runs with its keys, exactly as if they were in its stdin.
const (
	// EntryFileKey is the key of the attachment's config naming the file.
	EntryFileKey = "entryFile"
	// EntryFileName is the file's name in the agent's credentialDir (on
	// the node's disk, root only, the same path in the agent and on the
	// host): /var/lib/authbridge/authbridge-cni-entry.json by default.
	EntryFileName = "authbridge-cni-entry.json"
	// AttachmentName is the NetworkAttachmentDefinition's name (and the
	// network name in its config); AuthBridge pods request it in
	// AttachmentAnnotation.
	AttachmentName = "authbridge-cni"
	// AttachmentNamespace holds the one NetworkAttachmentDefinition every
	// namespace may reference: Multus' default globalNamespaces.
	AttachmentNamespace = "default"
	// AttachmentAnnotation is Multus' pod annotation listing the
	// attachments a pod requests.
	AttachmentAnnotation = "k8s.v1.cni.cncf.io/networks"
)
