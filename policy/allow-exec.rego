# authbridge-node: Kata agent policy preset "allow-exec" (DEBUG ONLY).
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
# Engine: the agent's regorus (0.9.1 plus #624, pinned by kata 4.1.0) parses
# Rego v1 by default; `import rego.v1` keeps the module valid for both it and
# OPA. Only builtins regorus registers with the agent's features (no net.*,
# glob.*, time.*) may be used: policy_test.go checks every call.
#
# Same as default-restrictive.rego, except that the host may exec into
# containers and use their stdio (kubectl exec/attach/logs). This gives the
# node's administrator the pod's data: use it to debug, never in production.
# node-agent kata initdata --preset allow-exec
package agent_policy

import rego.v1

# Paths the runtimes use in the guest (kata_agent.go and runtime-rs'
# resource crate, kata-containers 4.1.0).
#
# CopyFile: files the runtime may copy into the guest without a shared
# filesystem (hosts, hostname, resolv.conf, termination-log,
# ConfigMap/Secret/downward-API volumes, emptyDirs). The shape is
# genpolicy's (cpath + sfprefix in genpolicy-settings.json): the shared
# containers directory, optionally passthrough/ and watchable/, then
# <64-char id>-<16 random hex>-<name>, or sandbox-<16 random hex>-<name>
# for an emptyDir the Go runtime copies (shareFileName).
# Container root filesystems live in <cid>/rootfs under the same directory:
# a plain prefix check would let the host overwrite a running container's
# binaries, which is exec by another route.
# Symlinks additionally must be below such a name, never at its top level.
policy_data := {
	"copy_file_regex": `^/run/kata-containers/shared/containers/(passthrough/)?(watchable/)?([a-z0-9]{64}|sandbox)-[a-z0-9]{16}-[^/]+(/[^/]+)*$`,
	"copy_file_symlink_regex": `^/run/kata-containers/shared/containers/(passthrough/)?(watchable/)?([a-z0-9]{64}|sandbox)-[a-z0-9]{16}-[^/]+(/[^/]+)+$`,
	# A shared volume (what a watchable-bind storage may read from): the Go
	# runtime names it <cid>-<16 hex>-<name>, runtime-rs (generate_mount_path)
	# <first 10 of cid>-<8 hex>-<name> below passthrough/.
	"shared_file_regex": `^/run/kata-containers/shared/containers/(passthrough/)?([a-z0-9]{64}-[a-z0-9]{16}|[a-z0-9]{10}-[a-z0-9]{8})-[^/]+$`,
	# Where the shared filesystem itself is mounted (nydus: one level up).
	"shared_fs_mount_points": {
		"/run/kata-containers/shared/containers",
		"/run/kata-containers/shared/containers/",
		"/run/kata-containers/shared",
		"/run/kata-containers/shared/",
	},
	# shm of the sandbox, emptyDir (medium: Memory) and hugepages volumes.
	"ephemeral_mount_point_regex": `^/run/kata-containers/sandbox/(shm|ephemeral/[^/]+)$`,
	"ephemeral_option_regex": `^(noexec|nosuid|nodev|remount|mode=[0-7]{3,4}|size=[0-9]+[kKmMgG]?|fsgid=[0-9]+|pagesize=[0-9]+,size=[0-9]*)$`,
	# Block devices and overlays: the container's root filesystem, block
	# volumes (sandbox/storage/<base64url of the device>) and erofs layers
	# (virtual-volumes/<base64url>).
	"block_drivers": {"blk", "blk-ccw", "mmioblk", "scsi", "nvdimm"},
	"device_mount_point_regex": `^/run/kata-containers/(sandbox/storage|virtual-volumes)/[A-Za-z0-9_=-]+$`,
	"loopback_regex": [
		`^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$`,
		`^(0{0,4}:){0,7}0{0,3}1$`,
	],
	# genpolicy's UpdateInterfaceRequest.allow_raw_flags: IFF_NOARP only.
	"interface_raw_flags": 128,
	# NUD_REACHABLE, NUD_PERMANENT; flags NTF_PROXY|NTF_ROUTER at most.
	"arp_states": {2, 128},
	"arp_flags": 136,
}

# Never ignore a denial (the agent's debug escape hatch).
default AllowRequestsFailingPolicy := false

# --- Allowed: what a pod's lifecycle needs -------------------------------
# CreateSandbox, CreateContainer, UpdateEphemeralMounts and the networking
# requests are conditional (below): the host still chooses image, args, env
# and mounts, but not guest kernel modules, guest OCI hooks, a shared pid
# namespace, stdio over vsock, or mounts outside the runtime's directories.
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

default UpdateInterfaceRequest := false

default UpdateRoutesRequest := false

default ListInterfacesRequest := true

default ListRoutesRequest := true

default AddARPNeighborsRequest := false

# The Go runtime resizes emptyDir tmpfs volumes after every container create
# and start when static_sandbox_resource_mgmt is false (updateResources):
# allowed for exactly that remount, below.
default UpdateEphemeralMountsRequest := false

# stdout/stderr (kubectl logs). Allowed: for a denied read the agent drains
# the pipe and returns empty data, and both shims (kata 4.1.0: the Go
# runtime's readProcessStream maps it to io.EOF, runtime-rs' poll_read
# returns 0 bytes) take that as end of stream and stop reading. Nothing
# drains the pipe after that, so a container that writes more than the pipe
# holds (64 KiB) blocks (kata-containers issue 10680). The "deny-logs"
# preset denies it, with that cost.
default ReadStreamRequest := true

# --- Denied: the host must not read or write the guest's data -----------
# exec into a container (kubectl exec, probes of type exec run by the
# runtime through the agent are exec too: use httpGet/tcpSocket probes).
default ExecProcessRequest := true # opened by this preset

# stdin (kubectl attach -i, exec -i).
default WriteStreamRequest := true # opened by this preset

default CloseStdinRequest := true # opened by this preset

default TtyWinResizeRequest := true # opened by this preset

# The host must not swap the policy for a weaker one.
default SetPolicyRequest := false

# Container logs and diagnostics read from the guest (runtime-rs asks for
# the termination log this way without a shared filesystem: the host picks
# the path, so it could name any file of the container).
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

# Direct-assigned volume operations are not part of a standard pod's
# lifecycle (genpolicy denies them by default too).
default VolumeStatsRequest := false

default ResizeVolumeRequest := false

# --- CreateSandbox / CreateContainer: no host-chosen guest code ----------
# As genpolicy's rules.rego does: the host must not make the guest load
# kernel modules, run OCI hooks from a guest directory (guest_hook_path) or
# start the sandbox with a shared pid namespace. Storages: the shared
# filesystem and the sandbox's shm only.
CreateSandboxRequest if {
	count(input.guest_hook_path) == 0
	count(input.kernel_modules) == 0
	input.sandbox_pidns == false
	every s in input.storages {
		sandbox_storage(s)
	}
}

# sandbox_pidns would join the container to the pod's shared pid namespace
# (its processes visible to every container); OCI hooks would run
# host-chosen programs in the guest. Pods with shareProcessNamespace: true
# need a per-pod genpolicy policy. Non-zero stdio ports (runtime-rs passfd
# I/O) would carry stdio over vsock, past ReadStream/WriteStream.
CreateContainerRequest if {
	input.sandbox_pidns == false
	no_oci_hooks(input.OCI)
	object.get(input, "stdin_port", 0) == 0
	object.get(input, "stdout_port", 0) == 0
	object.get(input, "stderr_port", 0) == 0
	every s in input.storages {
		container_storage(s, input.container_id)
	}
}

no_oci_hooks(oci) if is_null(oci.Hooks)

no_oci_hooks(oci) if {
	is_object(oci.Hooks)
	every _, hooks in oci.Hooks {
		count(hooks) == 0
	}
}

# --- Storages: the drivers and mount points a pod needs -----------------
# The agent mounts each storage at mount_point (creating it), so a free
# mount point could cover the agent's own files (/etc/kata-opa, /usr/bin);
# watchable-bind makes it copy source to mount_point, so a free source could
# copy any guest file anywhere.
sandbox_storage(s) if {
	s.driver in {"virtio-fs", "9p"}
	s.source == "kataShared"
	s.fstype in {"virtiofs", "9p"}
	s.mount_point in policy_data.shared_fs_mount_points
}

sandbox_storage(s) if ephemeral_storage(s)

ephemeral_storage(s) if {
	s.driver == "ephemeral"
	s.source in {"shm", "tmpfs", "nodev"}
	s.fstype in {"tmpfs", "hugetlbfs"}
	regex.match(policy_data.ephemeral_mount_point_regex, s.mount_point)
	every o in s.options {
		regex.match(policy_data.ephemeral_option_regex, o)
	}
}

container_storage(s, _) if ephemeral_storage(s)

# ConfigMap/Secret/projected volumes over virtio-fs (no inotify): the agent
# polls source and mirrors it into mount_point, which is the same name below
# watchable/.
container_storage(s, _) if {
	s.driver == "watchable-bind"
	s.fstype == "bind"
	regex.match(policy_data.shared_file_regex, s.source)
	name := regex.replace(s.source, `^.*/`, "")
	dir := trim_suffix(s.source, name)
	s.mount_point == concat("", [dir, "watchable/", name])
}

# emptyDir with the Kata "local" type (Go runtime handleLocalStorage).
container_storage(s, _) if {
	s.driver == "local"
	s.source == "local"
	s.fstype == "local"
	regex.match(`^/run/kata-containers/shared/containers/[a-z0-9]{64}/rootfs/local/[^/]+$`, s.mount_point)
	not has_dot_dot(s.mount_point)
}

# Block devices: this container's root filesystem, block volumes, erofs layers.
container_storage(s, cid) if {
	s.driver in policy_data.block_drivers
	block_mount_point(s.mount_point, cid)
}

# Overlay root filesystems (nydus, erofs) and guest pull: mounted at this
# container's root; overlay directories only under /run/kata-containers.
container_storage(s, cid) if {
	s.driver in {"overlayfs", "image_guest_pull"}
	rootfs_mount_point(s.mount_point, cid)
	every o in s.options {
		overlay_option(o)
	}
}

block_mount_point(mp, cid) if rootfs_mount_point(mp, cid)

block_mount_point(mp, cid) if mp == concat("", ["/run/kata-containers/shared/containers/", cid])

block_mount_point(mp, _) if regex.match(policy_data.device_mount_point_regex, mp)

rootfs_mount_point(mp, cid) if {
	is_string(cid)
	regex.match(`^[a-z0-9]{64}$`, cid)
	mp in {
		concat("", ["/run/kata-containers/", cid, "/rootfs"]),
		concat("", ["/run/kata-containers/shared/containers/", cid, "/rootfs"]),
		concat("", ["/run/kata-containers/shared/containers/passthrough/", cid, "/rootfs"]),
	}
}

overlay_option(o) if not contains(o, "=")

overlay_option(o) if o == "index=off"

overlay_option(o) if {
	kv := split(o, "=")
	count(kv) == 2
	kv[0] in {"lowerdir", "upperdir", "workdir"}
	every p in split(kv[1], ":") {
		startswith(p, "/run/kata-containers/")
		not has_dot_dot(p)
	}
}

# --- UpdateEphemeralMounts: the Go runtime's tmpfs resize only ----------
# prepareEphemeralMounts: driver ephemeral, tmpfs, remount with a new size.
UpdateEphemeralMountsRequest if {
	every s in input.storages {
		ephemeral_storage(s)
		s.fstype == "tmpfs"
		s.source == "tmpfs"
		startswith(s.mount_point, "/run/kata-containers/sandbox/ephemeral/")
		"remount" in s.options
	}
}

# --- Networking: genpolicy's rules (no lo, no loopback, plain flags) ----
UpdateInterfaceRequest if {
	i := input.interface
	bits.and(i.raw_flags, bits.negate(policy_data.interface_raw_flags)) == 0
	i.name != "lo"
	i.device != "lo"
	i.hwAddr != "00:00:00:00:00:00"
	every a in i.IPAddresses {
		not is_loopback(a.address)
	}
}

UpdateRoutesRequest if {
	every r in input.routes.Routes {
		r.device != "lo"
		not is_loopback(r.source)
		not is_loopback(r.gateway)
	}
}

AddARPNeighborsRequest if {
	every n in input.neighbors.ARPNeighbors {
		n.device != "lo"
		n.toIPAddress.mask == ""
		not is_loopback(n.toIPAddress.address)
		n.state in policy_data.arp_states
		bits.or(n.flags, policy_data.arp_flags) == policy_data.arp_flags
	}
}

is_loopback(addr) if {
	some re in policy_data.loopback_regex
	regex.match(re, addr)
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
