# authbridge-node: Kata agent policy preset "allow-logs".
#
# Format: the Kata agent evaluates data.agent_policy.<RequestName> for every
# ttRPC request it receives from the host (the runtime, hence the node's
# administrator) and refuses the request unless the rule is true. Rules are
# named after the request messages of the AgentService in
# src/libs/protocols/protos/agent.proto (checked against kata-containers
# 4.1.0-23-g7c6ba40c54, see docs/kata-secure-by-default.md).
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

# Shared directory the runtime copies container files into (hosts,
# resolv.conf, ConfigMap/Secret volumes without a shared filesystem).
# Verified against KATA_GUEST_SHARE_DIR in src/agent/src/rpc.rs.
policy_data := {"copy_file_prefix": "/run/kata-containers/shared/containers/"}

# Never ignore a denial (the agent's debug escape hatch).
default AllowRequestsFailingPolicy := false

# --- Allowed: what a pod's lifecycle needs -------------------------------
default CreateSandboxRequest := true

default DestroySandboxRequest := true

default CreateContainerRequest := true

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

# Tracing exposes the guest's internals.
default StartTracingRequest := false

default StopTracingRequest := false

# Host-driven mounts and direct-assigned volume operations are not part of a
# standard pod's lifecycle (genpolicy denies them by default too).
default UpdateEphemeralMountsRequest := false

default VolumeStatsRequest := false

default ResizeVolumeRequest := false

# --- CopyFile: only into the shared containers directory ----------------
default CopyFileRequest := false

CopyFileRequest if {
	input.file_type in {"Regular", "Directory"}
	copy_file_path_allowed(input.path)
}

# Kubernetes' atomic writer (ConfigMap/Secret volumes) uses relative
# symlinks such as key -> ..data/key below a per-volume directory.
CopyFileRequest if {
	input.file_type == "Symlink"
	copy_file_path_allowed(input.path)
	contains(trim_prefix(input.path, policy_data.copy_file_prefix), "/")
	is_string(input.symlink_target)
	not startswith(input.symlink_target, "/")
	not has_dot_dot(input.symlink_target)
}

copy_file_path_allowed(path) if {
	is_string(path)
	startswith(path, policy_data.copy_file_prefix)
	count(path) > count(policy_data.copy_file_prefix)
	not has_dot_dot(path)
}

# A ".." path component (not "..data", which the atomic writer uses).
has_dot_dot(path) if regex.match(`(^|/)\.\.($|/)`, path)
