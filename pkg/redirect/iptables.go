package redirect

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// iptBackend drives the host's iptables binaries of one variant ("nft" or
// "legacy"): iptables-<variant> for IPv4 and ip6tables-<variant> for IPv6.
//
// Apply writes each family in one iptables-restore --noflush run: declaring
// the project's chains flushes them, the rules are re-added and the jumps from
// the hook chains are added or de-duplicated, all committed per table. Reads
// (jump counts, Verify) go through go-iptables, i.e. `iptables -S`.
//
// The jumps are inserted first in OUTPUT (and PREROUTING) so an ACCEPT that
// some other component appended cannot bypass the redirect.
type iptBackend struct {
	name    string
	variant string
}

func newIPTablesBackend(name, variant string) *iptBackend {
	return &iptBackend{name: name, variant: variant}
}

// xtablesWaitSeconds bounds the wait for the xtables lock, which legacy
// iptables shares across all network namespaces of the host (kube-proxy may
// hold it): wait rather than fail, but not forever.
const xtablesWaitSeconds = 10

func (b *iptBackend) Name() string { return b.name }

func (b *iptBackend) bin(f Family) string {
	if f == IPv6 {
		return "ip6tables-" + b.variant
	}
	return "iptables-" + b.variant
}

func (b *iptBackend) handle(f Family) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(b.bin(f)), iptables.Timeout(xtablesWaitSeconds))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is the %s binary installed on the host?)", b.bin(f), err, b.bin(f))
	}
	return ipt, nil
}

// hook is where each project chain is jumped from.
type hook struct{ table, from, chain string }

var iptHooks = []hook{
	{"nat", "OUTPUT", ChainRedirect},
	{"filter", "OUTPUT", ChainNoTCP},
	{"nat", "PREROUTING", ChainInbound},
}

func tableOf(k chainKind) string {
	if k == kindFilterOutput {
		return "filter"
	}
	return "nat"
}

func jumpSpec(h hook) string { return fmt.Sprintf("-A %s -j %s", h.from, h.chain) }

func (b *iptBackend) Apply(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	for _, f := range []Family{IPv4, IPv6} {
		if !s.Has(f) {
			if err := b.removeFamily(f, true); err != nil {
				return err
			}
			continue
		}
		if err := b.applyFamily(s, f); err != nil {
			return err
		}
	}
	return nil
}

func (b *iptBackend) applyFamily(s Spec, f Family) error {
	ipt, err := b.handle(f)
	if err != nil {
		return err
	}
	chains := render(s, f)
	want := map[string]bool{}
	for _, cr := range chains {
		want[cr.name] = true
	}
	var in strings.Builder
	for _, table := range []string{"nat", "filter"} {
		fmt.Fprintf(&in, "*%s\n", table)
		for _, cr := range chains {
			if tableOf(cr.kind) == table {
				fmt.Fprintf(&in, ":%s - [0:0]\n", cr.name)
			}
		}
		for _, cr := range chains {
			if tableOf(cr.kind) != table {
				continue
			}
			for _, r := range cr.rules {
				fmt.Fprintln(&in, iptRule(cr.name, f, r))
			}
		}
		for _, h := range iptHooks {
			if h.table != table || !want[h.chain] {
				continue
			}
			n, err := countJumps(ipt, h)
			if err != nil {
				return fmt.Errorf("%s: %w", b.bin(f), err)
			}
			if n == 0 {
				fmt.Fprintf(&in, "-I %s 1 -j %s\n", h.from, h.chain)
			}
			for ; n > 1; n-- {
				fmt.Fprintf(&in, "-D %s -j %s\n", h.from, h.chain)
			}
		}
		fmt.Fprintln(&in, "COMMIT")
	}
	cmd := exec.Command(b.bin(f)+"-restore", "--noflush", fmt.Sprintf("--wait=%d", xtablesWaitSeconds))
	cmd.Stdin = strings.NewReader(in.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s-restore: %v: %s", b.bin(f), err, strings.TrimSpace(stderr.String()))
	}
	// Chains the spec no longer has (inbound switched off).
	for _, h := range iptHooks {
		if !want[h.chain] {
			if err := removeHook(ipt, h); err != nil {
				return fmt.Errorf("%s: %w", b.bin(f), err)
			}
		}
	}
	return nil
}

func countJumps(ipt *iptables.IPTables, h hook) (int, error) {
	rules, err := ipt.List(h.table, h.from)
	if err != nil {
		return 0, fmt.Errorf("list %s %s: %w", h.table, h.from, err)
	}
	n := 0
	for _, r := range rules {
		if r == jumpSpec(h) {
			n++
		}
	}
	return n, nil
}

func removeHook(ipt *iptables.IPTables, h hook) error {
	n, err := countJumps(ipt, h)
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		if err := ipt.Delete(h.table, h.from, "-j", h.chain); err != nil {
			return fmt.Errorf("delete jump %s -> %s: %w", h.from, h.chain, err)
		}
	}
	if err := ipt.ClearAndDeleteChain(h.table, h.chain); err != nil {
		return fmt.Errorf("delete chain %s: %w", h.chain, err)
	}
	return nil
}

// removeFamily deletes the family's chains and jumps. With tolerant set, a
// family whose binary or kernel table is unusable counts as empty: there can
// be nothing of ours in it.
func (b *iptBackend) removeFamily(f Family, tolerant bool) error {
	ipt, err := b.handle(f)
	if err != nil {
		if tolerant {
			return nil
		}
		return err
	}
	for _, h := range iptHooks {
		if _, err := ipt.List(h.table, h.from); err != nil {
			if tolerant {
				continue
			}
			return fmt.Errorf("%s: list %s %s: %w", b.bin(f), h.table, h.from, err)
		}
		if err := removeHook(ipt, h); err != nil {
			return fmt.Errorf("%s: %w", b.bin(f), err)
		}
	}
	return nil
}

// Remove deletes the project's chains and jumps of both families. A family
// the host cannot program at all holds nothing of ours, so it is skipped.
func (b *iptBackend) Remove() error {
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		errs = append(errs, b.removeFamily(f, true))
	}
	return errors.Join(errs...)
}

func (b *iptBackend) Verify(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var problems []string
	for _, f := range []Family{IPv4, IPv6} {
		ipt, err := b.handle(f)
		if err != nil {
			if s.Has(f) {
				return err
			}
			continue
		}
		want := map[string]chainRules{}
		if s.Has(f) {
			for _, cr := range render(s, f) {
				want[cr.name] = cr
			}
		}
		for _, h := range iptHooks {
			cr, wanted := want[h.chain]
			exists, err := ipt.ChainExists(h.table, h.chain)
			if err != nil {
				if !wanted {
					continue // table unusable: nothing of ours there
				}
				return fmt.Errorf("%s: %w", b.bin(f), err)
			}
			jumps, err := countJumps(ipt, h)
			if err != nil {
				return fmt.Errorf("%s: %w", b.bin(f), err)
			}
			if !wanted {
				if exists {
					problems = append(problems, fmt.Sprintf("%s: chain %s exists but the spec does not have it", b.bin(f), h.chain))
				}
				if jumps > 0 {
					problems = append(problems, fmt.Sprintf("%s: %d jumps %s -> %s, want none", b.bin(f), jumps, h.from, h.chain))
				}
				continue
			}
			if jumps != 1 {
				problems = append(problems, fmt.Sprintf("%s: %d jumps %s -> %s, want exactly 1", b.bin(f), jumps, h.from, h.chain))
			}
			if !exists {
				problems = append(problems, fmt.Sprintf("%s: chain %s missing", b.bin(f), h.chain))
				continue
			}
			got, err := ipt.List(h.table, h.chain)
			if err != nil {
				return fmt.Errorf("%s: list %s: %w", b.bin(f), h.chain, err)
			}
			exp := []string{"-N " + h.chain}
			for _, r := range cr.rules {
				exp = append(exp, iptRule(h.chain, f, r))
			}
			if d := diffLines(exp, got); d != "" {
				problems = append(problems, fmt.Sprintf("%s chain %s differs:\n%s", b.bin(f), h.chain, d))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s rules differ from the spec: %s", b.name, strings.Join(problems, "; "))
	}
	return nil
}

// iptRule renders one rule in the canonical form `iptables -S` prints, which
// iptables-restore also accepts, so Apply and Verify share one rendering.
func iptRule(chain string, f Family, r rule) string {
	p := []string{"-A", chain}
	m := r.m
	if m.dst.IsValid() {
		p = append(p, "-d", m.dst.Masked().String())
	}
	if m.oifLo {
		p = append(p, "-o", "lo")
	}
	switch m.proto {
	case protoTCP:
		p = append(p, "-p", "tcp")
		if m.dport != 0 {
			p = append(p, "-m", "tcp", "--dport", fmt.Sprint(m.dport))
		}
	case protoUDP:
		p = append(p, "-p", "udp")
		if m.dport != 0 {
			p = append(p, "-m", "udp", "--dport", fmt.Sprint(m.dport))
		}
	case protoICMP:
		p = append(p, "-p", "icmp", "-m", "icmp", "--icmp-type", fmt.Sprint(*m.icmpType))
	case protoICMPv6:
		p = append(p, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", fmt.Sprint(*m.icmpType))
	}
	if m.markMatch {
		p = append(p, "-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", m.mark, m.mask))
	}
	if m.uid != nil {
		p = append(p, "-m", "owner", "--uid-owner", fmt.Sprint(*m.uid))
	}
	switch r.v {
	case vReturn:
		p = append(p, "-j", "RETURN")
	case vAccept:
		p = append(p, "-j", "ACCEPT")
	case vDrop:
		p = append(p, "-j", "DROP")
	case vRedirect:
		p = append(p, "-j", "REDIRECT", "--to-ports", fmt.Sprint(r.toPort))
	}
	return strings.Join(p, " ")
}
