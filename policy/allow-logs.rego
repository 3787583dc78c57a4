# authbridge-node: Kata agent policy preset "allow-logs".
#
# Format: the Kata agent evaluates data.agent_policy.<RequestName> for every
# ttRPC request it receives from the host (the runtime, hence the node's
# administrator) and refuses the request unless the rule is true. Rules are
# named after the request messages of the AgentService in
# src/libs/protocols/protos/agent.proto (checked against the kata-containers
# release tag 4.1.0, see docs/kata-secure-by-default.md).
#
# Default deny: every request is false unless listed as allowed below, and a
# request this file does not name at all fails closed in the agent too.
#
# `import rego.v1` keeps the module valid for OPA (Rego v1) and for the
# agent's regorus engine, which reads Rego v0 unless the module opts in.
#
# Same as default-restrictive.rego, except that the host may read the
# containers' stdout/stderr (kubectl logs). Choose it per pod, through
# initdata: node-agent kata initdata --preset allow-logs
package agent_policy

import rego.v1

# Files the runtime may copy into the guest (hosts, hostname, resolv.conf,
# termination-log, ConfigMap/Secret/downward-API volumes without a shared
# filesystem). The shape is genpolicy's (src/tools/genpolicy, kata-containers
# 4.1.0: cpath + sfprefix in genpolicy-settings.json): the shared containers
# directory (KATA_GUEST_SHARE_DIR in src/agent/src/rpc.rs), optionally
# passthrough/ and watchable/, then <64-char bundle id>-<16 random hex>-<name>.
# Container root filesystems live in <cid>/rootfs under the same directory:
# a plain prefix check would let the host overwrite a running container's
# binaries, which is exec by another route.
# Symlinks additionally must be below such a name, never at its top level.
policy_data := {
	"copy_file_regex": `^/run/kata-containers/shared/containers/(passthrough/)?(watchable/)?[a-z0-9]{64}-[a-z0-9]{16}-[^/]+(/[^/]+)*$`,
	"copy_file_symlink_regex": `^/run/kata-containers/shared/containers/(passthrough/)?(watchable/)?[a-z0-9]{64}-[a-z0-9]{16}-[^/]+(/[^/]+)+$`,
}

# Never ignore a denial (the agent's debug escape hatch).
default AllowRequestsFailingPolicy := false

# --- Allowed: what a pod's lifecycle needs -------------------------------
# CreateSandbox and CreateContainer are conditional (below): the host still
# chooses image, args, env and mounts, but not guest kernel modules, guest
# OCI hooks or a shared pid namespace.
default CreateSandboxRequest := false

default DestroySandboxRequest := true

default CreateContainerRequest := false

default StartContainerRequest := true

default RemoveContainerRequest := true

default UpdateContainerRequest := true

default PauseContainerRequest := true

default ResumeContainerRequest := true

default SignalProcessRequest := true

default WaitProcessRequest := true

default StatsContainerRequest := true

default GetMetricsRequest := true

default GetOOMEventRequest := true

default GuestDetailsRequest := true

default OnlineCPUMemRequest := true

default MemHotplugByProbeRequest := true

default MemAgentMemcgConfig := true

default MemAgentCompactConfig := true

default RemoveStaleVirtiofsShareMountsRequest := true

default UpdateInterfaceRequest := true

default UpdateRoutesRequest := true

default ListInterfacesRequest := true

default ListRoutesRequest := true

default AddARPNeighborsRequest := true

# --- Denied: the host must not read or write the guest's data -----------
# exec into a container (kubectl exec, probes of type exec run by the
# runtime through the agent are exec too: use httpGet/tcpSocket probes).
default ExecProcessRequest := false

# stdout/stderr (kubectl logs, attach): the agent redacts the data instead
# of failing the call, so containers keep running and logs come back empty.
default ReadStreamRequest := true # opened by this preset

# stdin (kubectl attach -i, exec -i).
default WriteStreamRequest := false

default CloseStdinRequest := false

default TtyWinResizeRequest := false

# The host must not swap the policy for a weaker one.
default SetPolicyRequest := false

# Container logs and diagnostics read from the guest.
default GetDiagnosticDataRequest := false

# Swap on a host-supplied device or path pages guest memory out to the host.
default AddSwapRequest := false

default AddSwapPathRequest := false

# The guest firewall is the pod's own; the host neither reads nor rewrites it.
default GetIPTablesRequest := false

default SetIPTablesRequest := false

# Host-chosen entropy and clock weaken the guest's cryptography (RNG seeding,
# certificate validity); only VM templating/resume uses them.
default ReseedRandomDevRequest := false

default SetGuestDateTimeRequest := false

# Host-driven mounts and direct-assigned volume operations are not part of a
# standard pod's lifecycle (genpolicy denies them by default too).
default UpdateEphemeralMountsRequest := false

default VolumeStatsRequest := false

default ResizeVolumeRequest := false

# --- CreateSandbox / CreateContainer: no host-chosen guest code ----------
# As genpolicy's rules.rego does: the host must not make the guest load
# kernel modules, run OCI hooks from a guest directory (guest_hook_path) or
# start the sandbox with a shared pid namespace.
CreateSandboxRequest if {
	count(input.guest_hook_path) == 0
	count(input.kernel_modules) == 0
	input.sandbox_pidns == false
}

# sandbox_pidns would join the container to the pod's shared pid namespace
# (its processes visible to every container); OCI hooks would run
# host-chosen programs in the guest. Pods with shareProcessNamespace: true
# need a per-pod genpolicy policy.
CreateContainerRequest if {
	input.sandbox_pidns == false
	no_oci_hooks(input.OCI)
}

no_oci_hooks(oci) if is_null(oci.Hooks)

no_oci_hooks(oci) if {
	is_object(oci.Hooks)
	every _, hooks in oci.Hooks {
		count(hooks) == 0
	}
}

# --- CopyFile: only the runtime's per-container files ------------------
default CopyFileRequest := false

CopyFileRequest if {
	input.file_type in {"Regular", "Directory"}
	copy_file_path_allowed(input.path)
}

# Kubernetes' atomic writer (ConfigMap/Secret volumes) uses relative
# symlinks such as key -> ..data/key below a per-volume directory; never at
# the top level, from which the runtime mounts.
CopyFileRequest if {
	input.file_type == "Symlink"
	copy_file_path_allowed(input.path)
	regex.match(policy_data.copy_file_symlink_regex, input.path)
	is_string(input.symlink_target)
	not startswith(input.symlink_target, "/")
	not has_dot_dot(input.symlink_target)
}

copy_file_path_allowed(path) if {
	is_string(path)
	regex.match(policy_data.copy_file_regex, path)
	not has_dot_dot(path)
}

# A ".." path component (not "..data", which the atomic writer uses).
has_dot_dot(path) if regex.match(`(^|/)\.\.($|/)`, path)
