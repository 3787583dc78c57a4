package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/kata"
	"github.com/kagenti/authbridge-node/policy"
)

const kataUsage = `usage: node-agent kata <command> [flags]

commands:
  initdata             build a CoCo initdata document for the pod annotation
                       ` + kata.AnnotationInitdata + `
  peer-pods-configmap  render the peer-pods default initdata (ConfigMap ` + kata.PeerPodsConfigMap + `, key ` + kata.PeerPodsInitdataKey + `)
  policy               print a policy preset (Rego)
  install              install the restrictive policy into this node's Kata initrds
                       (--allow-tee-initrd also changes measured TEE initrds;
                       --enable-initdata-annotation lets pods replace it: a weakening)
  uninstall            restore this node's Kata configurations (rollback) and
                       remove the Node's kata-policy label and annotation
                       (--node, default $NODE_NAME; --kubeconfig, default in-cluster)

policy flags (initdata, peer-pods-configmap, policy):
  --preset restrictive|deny-logs|allow-exec    (default restrictive)
  --policy-file FILE                           your own Rego instead of a preset
`

// kataMain runs `node-agent kata <args...>` (args exclude "kata") and returns
// the process exit code: 0 success, 1 failure, 2 bad usage.
func kataMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, kataUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "initdata":
		err = runInitdata(args[1:], stdout, stderr, false)
	case "peer-pods-configmap":
		err = runInitdata(args[1:], stdout, stderr, true)
	case "policy":
		err = runPolicy(args[1:], stdout, stderr)
	case "install", "uninstall":
		err = runNode(ctx, args[0], args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "node-agent kata: unknown command %q\n\n%s", args[0], kataUsage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "node-agent kata %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "node-agent kata %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ error }

type policyFlags struct{ preset, file string }

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.preset, "preset", "", "policy preset: "+strings.Join(policy.Presets, ", ")+" (default "+policy.PresetRestrictive+")")
	fs.StringVar(&p.file, "policy-file", "", "Rego file to use instead of a preset")
}

// load returns the policy source and a name for messages.
func (p *policyFlags) load() ([]byte, string, error) {
	if p.preset != "" && p.file != "" {
		return nil, "", usageError{errors.New("--preset and --policy-file are exclusive: choose one")}
	}
	if p.file != "" {
		b, err := os.ReadFile(p.file)
		if err != nil {
			return nil, "", fmt.Errorf("read --policy-file: %w", err)
		}
		return b, p.file, nil
	}
	name := p.preset
	if name == "" {
		name = policy.PresetRestrictive
	}
	b, err := policy.Preset(name)
	if err != nil {
		return nil, "", usageError{err}
	}
	return b, name, nil
}

func newKataFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("node-agent kata "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func runInitdata(args []string, stdout, stderr io.Writer, peerPods bool) error {
	name := "initdata"
	if peerPods {
		name = "peer-pods-configmap"
	}
	fs := newKataFlagSet(name, stderr)
	var pf policyFlags
	pf.register(fs)
	alg := fs.String("algorithm", kata.DefaultInitdataAlgorithm, "initdata digest algorithm: "+strings.Join(kata.InitdataAlgorithms, ", "))
	aa := fs.String("aa-toml", "", "attestation-agent configuration to include as aa.toml")
	cdh := fs.String("cdh-toml", "", "confidential-data-hub configuration to include as cdh.toml")
	format := fs.String("format", "value", "initdata output: value (annotation value), yaml (pod metadata snippet), toml (the raw document)")
	platform := fs.String("platform", "", "also print the digest as this TEE reports it: tdx, snp, cca, se")
	namespace := fs.String("namespace", kata.PeerPodsNamespace, "peer-pods-configmap: namespace of "+kata.PeerPodsConfigMap)
	helmProvider := fs.String("helm-provider", "", "peer-pods-configmap: print a values file for the peerpods Helm chart (providerConfigs.<provider>.INITDATA) instead of a ConfigMap patch")
	if err := parse(fs, args); err != nil {
		return err
	}
	src, srcName, err := pf.load()
	if err != nil {
		return err
	}
	opts := kata.InitdataOptions{Policy: src, PolicyName: srcName, Algorithm: *alg}
	if *aa != "" {
		if opts.AAToml, err = os.ReadFile(*aa); err != nil {
			return fmt.Errorf("read --aa-toml: %w", err)
		}
	}
	if *cdh != "" {
		if opts.CDHToml, err = os.ReadFile(*cdh); err != nil {
			return fmt.Errorf("read --cdh-toml: %w", err)
		}
	}
	doc, err := kata.BuildInitdata(opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "initdata digest (%s of the TOML document): %s\n", doc.Algorithm, doc.DigestHex())
	if *platform != "" {
		pd, err := doc.PlatformDigest(*platform)
		if err != nil {
			return usageError{err}
		}
		fmt.Fprintf(stderr, "as %s reports it: %s\n", *platform, hex.EncodeToString(pd))
	}
	if peerPods && *helmProvider != "" {
		out, err := kata.RenderPeerPodsHelmValues(doc, *helmProvider)
		if err != nil {
			return usageError{err}
		}
		_, err = stdout.Write(out)
		return err
	}
	if peerPods {
		out, err := kata.RenderPeerPodsConfigMap(doc, *namespace)
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	}
	switch *format {
	case "value":
		_, err = fmt.Fprintln(stdout, doc.Annotation)
	case "toml":
		_, err = stdout.Write(doc.TOML)
	case "yaml":
		var out []byte
		if out, err = kata.RenderPodAnnotation(doc); err == nil {
			_, err = stdout.Write(out)
		}
	default:
		return usageError{fmt.Errorf("--format %q: allowed values are value, yaml, toml", *format)}
	}
	return err
}

func runPolicy(args []string, stdout, stderr io.Writer) error {
	fs := newKataFlagSet("policy", stderr)
	var pf policyFlags
	pf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	src, name, err := pf.load()
	if err != nil {
		return err
	}
	if err := kata.ValidatePolicy(name, src); err != nil {
		return err
	}
	_, err = stdout.Write(src)
	return err
}

func runNode(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newKataFlagSet(cmd, stderr)
	root := fs.String("host-root", kata.DefaultHostRoot, "where the host's / is mounted")
	allowTEE := fs.Bool("allow-tee-initrd", false, "install: also append to initrds of confidential_guest (TEE) configurations, changing their launch measurement")
	initdataAnno := fs.Bool("enable-initdata-annotation", false, "install: WEAKENING, also enable the cc_init_data annotation so pods can replace the policy with their own initdata")
	node := fs.String("node", os.Getenv("NODE_NAME"), "uninstall: Node whose "+kata.LabelKataPolicy+" label and sha256 annotation to remove (default $NODE_NAME)")
	kubeconfig := fs.String("kubeconfig", "", "uninstall: kubeconfig for removing the Node label (default: in-cluster)")
	if err := parse(fs, args); err != nil {
		return err
	}
	n := &kata.NodeInstaller{HostRoot: *root, AllowTEEInitrd: *allowTEE, EnableInitdataAnnotation: *initdataAnno, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if cmd == "uninstall" {
		if err := n.Uninstall(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Kata configurations restored; guests booted from now on have no authbridge policy")
		if *node == "" {
			fmt.Fprintf(stderr, "note: --node (or NODE_NAME) not set: remove the %s label and %s annotation from the Node yourself\n", kata.LabelKataPolicy, kata.AnnotationKataPolicySHA256)
			return nil
		}
		cs, err := kubeClient(*kubeconfig)
		if err != nil {
			return fmt.Errorf("configurations restored, but the Node label was not removed: %w", err)
		}
		if err := kata.ClearNodeMarks(ctx, cs, *node); err != nil {
			return fmt.Errorf("configurations restored, but: %w", err)
		}
		fmt.Fprintf(stdout, "removed %s and %s from node %s\n", kata.LabelKataPolicy, kata.AnnotationKataPolicySHA256, *node)
		return nil
	}
	res, err := n.Install(ctx)
	for _, c := range res.Configs {
		fmt.Fprintf(stdout, "%s [hypervisor.%s]: %s %s%s\n", c.Config, c.Hypervisor, c.Status, c.Initrd, c.Reason)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s=%s\n%s=%s\n", kata.LabelKataPolicy, res.Label(), kata.AnnotationKataPolicySHA256, res.PublishedSHA256())
	return nil
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
