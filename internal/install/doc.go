// Package install puts the authbridge-cni plugin on a node and keeps it
// there: the binary in the CNI bin dir, our entry last in the primary
// network's conflist, and the plugin's kubeconfig.
//
// # Which file is the primary network
//
// containerd (go-cni loadFromConfDir) and CRI-O (ocicni) list the conf dir
// with libcni.ConfFiles(dir, [".conf", ".conflist", ".json"]) — every
// non-directory entry with one of those extensions, symlinks included — and
// sort the full paths with sort.Strings (byte order, so "05-cilium" <
// "10-calico" < "99-x", and "a.conf" < "a.conflist"). The first one is the
// default network. PrimaryConfFile does the same, minus our own files
// (Options.IgnoreNames) and JSON files that are neither a conflist
// ("plugins") nor a single-plugin config ("type"). A first file that does
// not parse is an error naming it: runtimes fail on it too, and we never
// edit or guess past a file we cannot read.
//
// # What is written
//
// Our entry goes last in "plugins" (chained plugins run after the primary
// CNI has set up the interface). Every other byte of meaning is kept: the
// file is decoded as an ordered list of raw JSON values, so unknown fields,
// key order and number literals (no float64 round trip) survive; only
// whitespace is normalised. The file's cniVersion is kept (the runtime
// passes it to every plugin in the list); the plugin supports 0.4.0, 1.0.0
// and 1.1.0 results. A single-plugin .conf (OVN-Kubernetes) becomes
// name.conflist {cniVersion, name, plugins: [original, ours]} — what
// libcni's ConfListFromConf builds — and the original is kept as
// name.conf.authbridge-backup (not a config extension, so never loaded);
// RemoveEntry restores it if the conflist is otherwise still what we made.
// All writes are temp file + fsync + rename in the same directory, keeping
// the file's mode and owner.
//
// # Keeping it
//
// Keeper.Run watches the conf dir with fsnotify and re-runs InstallEntry a
// few milliseconds after a config file changes, plus every 30 s. Primary
// CNIs rewrite their file at start or on config change (Calico's
// install-cni, Cilium's agent, kindnet); the entry is back within
// milliseconds (see TestKeeperReinsertTiming for measured figures).
//
// A primary CNI that actively enforces its own file content (Cilium with
// cni.exclusive, which also renames other configs to *.cilium_bak) would
// fight the keeper: each rewrite is followed by a re-insertion, visible as
// a climbing authbridge_conflist_reinsertions_total. Configure such CNIs
// for chaining (Cilium: cni.exclusive=false), as Istio CNI requires too.
//
// # Multus: an attachment instead of a chain
//
// Where the runtime's default network is Multus (PrimaryIsMultus: thin
// "multus" or thick "multus-shim", as OpenShift's Cluster Network Operator
// writes 00-multus.conf), cniInstallMode auto resolves to
// multus-attachment (ResolveMode): the conf dir is left to its owners and
// the entry goes to a file (WriteEntryFile) that the
// NetworkAttachmentDefinition authbridge-cni names; pods request that
// attachment. Chaining into Multus' own file fights the operator; chaining
// into the cluster network Multus names (clusterNetwork, a .conf path on
// OpenShift) is impossible, since Multus loads a .conf path with libcni's
// ConfFromFile, which refuses a list (docs/operations.md, OpenShift).
//
// # Uninstall
//
// Uninstall removes the entry first and the binary second: an entry whose
// binary is missing makes every pod sandbox creation on the node fail. If
// removing the entry fails, the binary stays. The agent must stop the
// Keeper before calling Uninstall, and give Uninstall a context that is not
// the one SIGTERM cancelled. The agent calls it only on a real uninstall
// (its DaemonSet deleted or no longer selecting the node, or
// node-agent uninstall): an agent restart or upgrade leaves the plugin in
// place, and the plugin keeps deciding with its own Node-bound credential
// while no agent answers.
//
// # Kubeconfig
//
// WriteKubeconfig renders the plugin's kubeconfig with clientcmd (mode
// 0600, inline bearer token, like Calico's calico-kubeconfig). The token is
// the plugin's own, bound to the Node; the agent requests and refreshes it
// (agent.PluginCredential) and writes it outside the CNI conf dir.
package install
