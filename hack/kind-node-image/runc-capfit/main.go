// Command runc-capfit is an OCI runtime shim for dockerd on hosts whose own
// capability bounding set is smaller than the kernel's list (here: no
// CAP_SYS_RESOURCE, e.g. when the machine is itself a container). dockerd
// gives --privileged containers every capability the kernel knows, and runc
// then fails with "unable to apply caps: operation not permitted"; kind's
// node containers are --privileged. This shim drops, from the OCI config of
// `create`/`run` and the process file of `exec`, every capability outside
// its own bounding set, then execs the real runc with the same arguments.
//
// Without CAP_SYS_RESOURCE, runc also cannot lower a container's
// oom_score_adj below its own ("failed to update /proc/self/oom_score_adj:
// Permission denied"); a CRI runtime asks for that for critical pods
// (kube-proxy: -997). So create/run also raises process.oomScoreAdj to our
// own value, as containerd's restrict_oom_score_adj does; CRI-O (the
// E2E_VARIANT=crio nodes) has no such setting and uses this shim as its runc.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const realRunc = "/usr/sbin/runc"

// capNames is the kernel's capability list, indexed by number.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// missingCaps returns the names of capabilities absent from our bounding set.
func missingCaps() (map[string]bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("parse CapBnd %q: %w", v, err)
			}
			miss := map[string]bool{}
			for i, n := range capNames {
				if bnd&(1<<uint(i)) == 0 {
					miss[n] = true
				}
			}
			return miss, nil
		}
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

// fitCaps rewrites the capabilities object found at path (within the JSON
// document in file) without the missing ones.
func fitCaps(file string, process bool, miss map[string]bool) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", file, err)
	}
	proc := doc
	if !process {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if s, _ := c.(string); miss[s] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(file, out, 0o600)
}

// ownOOMScoreAdj is the oom_score_adj this process runs with.
func ownOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// fitOOMScoreAdj raises the OCI config's process.oomScoreAdj to floor when
// it is lower (a lower value needs CAP_SYS_RESOURCE).
func fitOOMScoreAdj(file string, floor int) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", file, err)
	}
	proc, ok := doc["process"].(map[string]any)
	if !ok {
		return nil
	}
	v, ok := proc["oomScoreAdj"].(float64)
	if !ok || int(v) >= floor {
		return nil
	}
	proc["oomScoreAdj"] = floor
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(file, out, 0o600)
}

func main() {
	args := os.Args[1:]
	miss, err := missingCaps()
	if err == nil && len(miss) > 0 {
		cmd, bundle, procFile := "", ".", ""
		for i := 0; i < len(args); i++ {
			a := args[i]
			next := func() string {
				if i+1 < len(args) {
					i++
					return args[i]
				}
				return ""
			}
			switch {
			case a == "--bundle" || a == "-b":
				bundle = next()
			case strings.HasPrefix(a, "--bundle="):
				bundle = strings.TrimPrefix(a, "--bundle=")
			case a == "--process" || a == "-p":
				procFile = next()
			case strings.HasPrefix(a, "--process="):
				procFile = strings.TrimPrefix(a, "--process=")
			case cmd == "" && !strings.HasPrefix(a, "-"):
				cmd = a
			case cmd == "" && (a == "--root" || a == "--log" || a == "--log-format" || a == "--criu"):
				next() // global flags with a value
			}
		}
		switch {
		case cmd == "create" || cmd == "run":
			cfg := filepath.Join(bundle, "config.json")
			err = fitCaps(cfg, false, miss)
			if own, oerr := ownOOMScoreAdj(); err == nil && oerr == nil && miss["CAP_SYS_RESOURCE"] {
				err = fitOOMScoreAdj(cfg, own)
			}
		case cmd == "exec" && procFile != "":
			err = fitCaps(procFile, true, miss)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "runc-capfit: %v\n", err)
		}
	}
	if err := syscall.Exec(realRunc, append([]string{realRunc}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capfit: exec %s: %v\n", realRunc, err)
		os.Exit(127)
	}
}
