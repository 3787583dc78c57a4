// Package cli is the node-agent command line: run (default), probe,
// version and kata. main stays a few lines; this package is testable.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kagenti/authbridge-node/internal/agent"
	"github.com/kagenti/authbridge-node/internal/hostdns"
	"github.com/kagenti/authbridge-node/internal/install"
	"github.com/kagenti/authbridge-node/internal/kata"
	"github.com/kagenti/authbridge-node/pkg/capability"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Version is set at build time with -ldflags "-X .../internal/agent/cli.Version=v1.2.3".
var Version = ""

const usage = `usage: node-agent [command] [flags]

commands:
  run       (default) install the authbridge-cni plugin, probe the redirect
            backends, label this Node, serve /metrics /healthz /readyz
  probe     probe the redirect backends once and print the results as JSON
            (exit 0 if one works, 3 if none does)
  uninstall remove the plugin from this node for good: conflist entry, then
            binary, then its credential, then this Node's capability labels
            (the agent itself does this only when its DaemonSet is deleted or
            no longer selects the node)
  version   print the version
  kata      Kata agent policy tools (node-agent kata help)
  validate  in-pod check, run as an unprivileged init container before the
            sidecar: exit 0 only if this pod's egress is really redirected

run 'node-agent <command> -h' for the command's flags
`

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return run(ctx, args, stderr)
	case "probe":
		return probe(ctx, args, stdout, stderr)
	case "uninstall":
		return uninstall(ctx, args, stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "kata":
		return kataMain(ctx, args, stdout, stderr)
	case "validate":
		return validateCmd(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "node-agent: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

type runFlags struct {
	config, kubeletConfig, resolvConf, pluginBinary string
	kubeconfig, caFile, pluginAPIServer             string
	nodeName, hostRoot, ipv6Disabled                string
	podName, podNamespace, daemonSet                string
	kata, kataInitdataAnnotation                    bool
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("node-agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f runFlags
	fs.StringVar(&f.config, "config", agent.DefaultConfigPath, "agent config file (ConfigMap authbridge-node-config)")
	fs.StringVar(&f.kubeletConfig, "kubelet-config", "", "the host's kubelet config file, as mounted in the agent (clusterDNS, resolvConf); default: the first KubeletConfiguration found under --host-root at "+strings.Join(hostdns.KubeletConfigCandidates(), ", "))
	fs.StringVar(&f.resolvConf, "resolv-conf", "", "the node resolv.conf (resolvers of dnsPolicy Default pods); default: the kubelet config's resolvConf under --host-root, else <host-root>/etc/resolv.conf")
	fs.StringVar(&f.ipv6Disabled, "ipv6-disabled-sysctl", agent.DefaultIPv6DisabledPath, "the host's disable_ipv6 sysctl (the agent runs with hostNetwork): 0 means backends are probed for IPv4 and IPv6")
	fs.StringVar(&f.pluginBinary, "plugin-binary", "/opt/authbridge/bin/authbridge-cni", "the plugin binary to install")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for the agent's own API access (default: in-cluster service account)")
	fs.StringVar(&f.caFile, "ca-file", install.DefaultCAFile, "cluster CA for the plugin's kubeconfig")
	fs.StringVar(&f.podName, "pod-name", os.Getenv("POD_NAME"), "the agent's own pod (default $POD_NAME): its owner DaemonSet is checked at shutdown")
	fs.StringVar(&f.podNamespace, "pod-namespace", os.Getenv("POD_NAMESPACE"), "the agent's namespace (default $POD_NAMESPACE): its DaemonSet and the plugin's ServiceAccount "+agent.PluginServiceAccount+" live there")
	fs.StringVar(&f.daemonSet, "daemonset", "authbridge-node", "the agent's DaemonSet, when its own pod cannot be read at shutdown")
	fs.StringVar(&f.pluginAPIServer, "plugin-api-server", "", "API server URL for the plugin (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
	fs.StringVar(&f.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME from the downward API)")
	fs.BoolVar(&f.kata, "kata", true, "install the restrictive Kata agent policy on Kata nodes")
	fs.BoolVar(&f.kataInitdataAnnotation, "kata-initdata-annotation", false, "WEAKENING: also enable the cc_init_data annotation on the Kata configurations that carry the policy, so pods can replace it with their own initdata (counted in authbridge_config_weakenings)")
	fs.StringVar(&f.hostRoot, "host-root", kata.DefaultHostRoot, "where the host's / is mounted (host iptables binaries, Kata configurations)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := agent.LoadConfig(f.config, false)
	if err != nil {
		fmt.Fprintf(stderr, "node-agent: refusing to start: %v\n", err)
		return 1
	}
	log := agent.NewLogger(stderr, cfg.LogLevel)
	restCfg, err := restConfig(f.kubeconfig)
	if err != nil {
		log.Error("refusing to start: no API access", "err", err)
		return 1
	}
	restCfg.UserAgent = "authbridge-node-agent/" + version()
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		log.Error("refusing to start: kubernetes client", "err", err)
		return 1
	}
	server := f.pluginAPIServer
	if server == "" {
		h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if h == "" || p == "" {
			log.Error("refusing to start: the plugin's API server is unknown: set --plugin-api-server or KUBERNETES_SERVICE_HOST/PORT")
			return 1
		}
		server = "https://" + net.JoinHostPort(h, p)
	}
	if f.podNamespace == "" {
		log.Error("refusing to start: the agent's namespace is unknown: set POD_NAMESPACE from the downward API (fieldRef metadata.namespace) or --pod-namespace")
		return 1
	}
	cred := &agent.PluginCredential{Client: cs, Namespace: f.podNamespace, NodeName: f.nodeName,
		Server: server, CAFile: f.caFile, Logger: log}
	inst := &agent.PluginInstaller{
		Config: cfg, SourceBinary: f.pluginBinary, Credential: cred, Logger: log,
	}
	o := agent.Options{
		Config:   cfg,
		NodeName: f.nodeName,
		Client:   cs,
		Probe: capability.HostProbe{Exe: "/proc/self/exe", HostRoot: f.hostRoot, Logger: log,
			Fallback: capability.WithHostBinaries(productionProbe, f.hostRoot)}.Func(),
		Installer:         inst,
		Logger:            log,
		HostRoot:          f.hostRoot,
		KubeletConfigPath: f.kubeletConfig,
		ResolvConfPath:    f.resolvConf,
		IPv6DisabledPath:  f.ipv6Disabled,
		UninstallCheck: agent.OwnerCheck{Client: cs, Namespace: f.podNamespace, PodName: f.podName,
			DaemonSet: f.daemonSet, NodeName: f.nodeName}.Check,
	}
	if f.kata {
		o.Extensions = append(o.Extensions, agent.KataExtension{Installer: &kata.NodeInstaller{HostRoot: f.hostRoot, Log: log, EnableInitdataAnnotation: f.kataInitdataAnnotation}})
	}
	a, err := agent.New(o)
	if err != nil {
		log.Error("refusing to start", "err", err)
		return 1
	}
	m := a.Metrics()
	inst.OnReinsert = m.ConflistReinsertions.Inc
	cred.OnRefresh = m.TokenRefreshes.Inc
	cred.OnRefreshError = func(error) { m.TokenRefreshErrors.Inc() }
	cred.OnUnbound = func() { m.ConfigWeakenings.WithLabelValues("pluginTokenNotNodeBound").Set(1) }
	log.Info("node agent starting", "version", version(), "node", f.nodeName, "metricsAddr", cfg.MetricsAddr, "backends", cfg.Backends)
	if err := a.Run(ctx); err != nil {
		log.Error("node agent stopped with an error", "err", err)
		return 1
	}
	log.Info("node agent stopped")
	return 0
}

// uninstall is the operator's explicit removal on one node (run it where
// the agent's host mounts are, e.g. kubectl exec into the agent pod before
// deleting the DaemonSet, or a privileged debug pod).
func uninstall(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("node-agent uninstall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", agent.DefaultConfigPath, "agent config file (CNI dirs, credential dir); defaults apply when the file is missing")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to remove the Node labels with (default: in-cluster service account); with --keep-labels no API access is needed")
	nodeName := fs.String("node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	keepLabels := fs.Bool("keep-labels", false, "leave the Node's capability labels (no API access)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := agent.LoadConfig(*cfgPath, true)
	if err != nil {
		fmt.Fprintf(stderr, "node-agent uninstall: %v\n", err)
		return 1
	}
	log := agent.NewLogger(stderr, cfg.LogLevel)
	inst := &agent.PluginInstaller{Config: cfg, Logger: log}
	if err := inst.Uninstall(ctx); err != nil {
		log.Error("uninstall failed", "err", err)
		return 1
	}
	log.Info("authbridge-cni removed from this node: entry, binary, credential", "confDir", cfg.CNIConfDir, "binDir", cfg.CNIBinDir)
	if *keepLabels {
		return 0
	}
	restCfg, err := restConfig(*kubeconfig)
	if err != nil {
		log.Error("cannot remove the Node labels: no API access (use --keep-labels to skip)", "err", err)
		return 1
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		log.Error("kubernetes client", "err", err)
		return 1
	}
	if err := agent.RemoveNodeLabels(ctx, cs, *nodeName); err != nil {
		log.Error("cannot remove the Node labels", "err", err)
		return 1
	}
	log.Info("capability labels removed", "node", *nodeName)
	return 0
}

func productionProbe(ctx context.Context, backends []string, families []redirect.Family) []nodestate.BackendResult {
	return capability.Probe(ctx, backends, capability.Options{Families: families})
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (or pass --kubeconfig): %w", err)
	}
	return c, nil
}

type probeOutput struct {
	EgressRedirect string                    `json:"egressRedirect"`
	Capable        bool                      `json:"capable"`
	Families       []redirect.Family         `json:"families"`
	Results        []nodestate.BackendResult `json:"results"`
}

func probe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node-agent probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", agent.DefaultConfigPath, "agent config file (backend preference order); defaults apply when the file is missing")
	hostRoot := fs.String("host-root", kata.DefaultHostRoot, "where the host's / is mounted (host iptables binaries); / when run on the host")
	// --raw is the agent's own call into the host root (capability.HostProbe):
	// the given backends and families, results as a JSON list, nothing else.
	raw := fs.Bool("raw", false, "internal: probe --backends for --families in this root and print the results as JSON")
	rawBackends := fs.String("backends", "", "with --raw: comma-separated backends")
	rawFamilies := fs.String("families", "ipv4", "with --raw: comma-separated families (ipv4, ipv6)")
	ipv6Disabled := fs.String("ipv6-disabled-sysctl", agent.DefaultIPv6DisabledPath, "the host's disable_ipv6 sysctl: 0 means backends are probed for IPv4 and IPv6")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *raw {
		return rawProbe(ctx, *rawBackends, *rawFamilies, stdout, stderr)
	}
	cfg, err := agent.LoadConfig(*cfgPath, true)
	if err != nil {
		fmt.Fprintf(stderr, "node-agent probe: %v\n", err)
		return 1
	}
	families, err := agent.ProbeFamilies(*ipv6Disabled)
	if err != nil {
		fmt.Fprintf(stderr, "node-agent probe: %v; probing IPv4 only\n", err)
	}
	res := capability.HostProbe{Exe: "/proc/self/exe", HostRoot: *hostRoot, Logger: slog.New(slog.NewTextHandler(stderr, nil)),
		Fallback: capability.WithHostBinaries(productionProbe, *hostRoot)}.Func()(ctx, cfg.Backends, families)
	out := probeOutput{EgressRedirect: agent.BackendNone, Families: families, Results: res}
	if w := (nodestate.State{Results: res}).Working(cfg.Backends); len(w) > 0 {
		out.EgressRedirect, out.Capable = w[0], true
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return 1
	}
	if !out.Capable {
		return 3
	}
	return 0
}

// rawProbe runs the real capability probe in the current root (the host's,
// when the agent chroots into it) and prints []nodestate.BackendResult.
func rawProbe(ctx context.Context, backends, families string, stdout, stderr io.Writer) int {
	if backends == "" {
		fmt.Fprintln(stderr, "node-agent probe --raw: --backends is required")
		return 2
	}
	var fams []redirect.Family
	for _, f := range strings.Split(families, ",") {
		switch redirect.Family(f) {
		case redirect.IPv4, redirect.IPv6:
			fams = append(fams, redirect.Family(f))
		default:
			fmt.Fprintf(stderr, "node-agent probe --raw: --families: unknown family %q: allowed values are ipv4, ipv6\n", f)
			return 2
		}
	}
	if os.Getenv(capability.HostProbeChildEnv) == capability.HostProbeChildChroot {
		// In the host's root, in a private mount namespace (capability.HostProbe):
		// a procfs of our own PID namespace, so /proc/<pid>/task/<tid> names
		// our threads.
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fmt.Fprintf(stderr, "node-agent probe --raw: mount /proc in the host root: %v\n", err)
			return 1
		}
	}
	res := productionProbe(ctx, strings.Split(backends, ","), fams)
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
