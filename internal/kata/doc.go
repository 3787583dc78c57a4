// Package kata makes Kata / Confidential Containers pods secure by default:
// it installs the restrictive agent policy (policy/default-restrictive.rego)
// into the guest initrd on Kata nodes (NodeInstaller), builds CoCo initdata
// documents for per-pod overrides and for the peer-pods default
// (BuildInitdata, RenderPeerPodsConfigMap), and implements the
// `node-agent kata ...` subcommands (Main).
package kata

// Names the node agent publishes from an Install Result.
const (
	// LabelKataPolicy is set on the Node to Result.Label().
	LabelKataPolicy = "authbridge.kagenti.io/kata-policy"
	// AnnotationKataPolicySHA256 is set on the Node to Result.PolicySHA256.
	AnnotationKataPolicySHA256 = "authbridge.kagenti.io/kata-policy-sha256"

	// LabelValueRestrictive: every Kata configuration on the node boots a
	// guest carrying the restrictive policy.
	LabelValueRestrictive = "restrictive"
	// LabelValuePartial: some Kata configurations (image-based guests) could
	// not be changed; see Result.Configs for which and the fix.
	LabelValuePartial = "partial"
	// LabelValueUnenforced: the guests' agents are built without the
	// policy feature, so no policy is enforced whatever file they carry.
	LabelValueUnenforced = "unenforced"
)

// Guest-side names, verified against kata-containers src/agent (see
// docs/kata-secure-by-default.md for the commit).
const (
	// GuestPolicyPath is where the agent reads its default policy.
	GuestPolicyPath = "/etc/kata-opa/default-policy.rego"
	// GuestSharedContainersDir is KATA_GUEST_SHARE_DIR, the only place
	// CopyFileRequest may write under the restrictive policy.
	GuestSharedContainersDir = "/run/kata-containers/shared/containers/"
)

// AnnotationInitdata is the pod annotation the Kata runtime (and the
// peer-pods cloud-api-adaptor) reads initdata from: gzip + standard base64
// of the initdata TOML document.
const AnnotationInitdata = "io.katacontainers.config.hypervisor.cc_init_data"
