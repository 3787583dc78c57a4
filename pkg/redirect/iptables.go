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
// Apply reads each family's state with one iptables-save and writes it in one
// iptables-restore --noflush run: declaring the project's chains flushes
// them, the rules are re-added, the jumps from the hook chains are put at
// position 1 (added, moved or de-duplicated) and chains the spec no longer
// has are deleted, all committed per table. Verify reads one iptables-save
// per family. Removing a family that holds project chains goes through
// go-iptables. Two processes per family keep Apply near the cost of a single
// exec; go-iptables would run one process per read (plus one per handle
// for `--version`).
//
// The jumps must be rule 1 of OUTPUT (and PREROUTING): xtables stops at the
// first ACCEPT of a built-in chain, so a rule that some other component
// inserted ahead of our jump would bypass the redirect. Verify refuses a jump
// anywhere else and Apply moves it back.
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
	cur, err := b.save(f)
	if err != nil {
		return err
	}
	return b.restore(f, restoreInput(s, f, cur))
}

// restoreInput is the iptables-restore --noflush text that turns the
// family's current state cur into the spec: with an empty cur, the whole
// rule set as a fresh netns gets it (the golden files under testdata).
func restoreInput(s Spec, f Family, cur savedRules) string {
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
		for _, h := range iptHooks {
			// Declaring flushes the chain, so the -X below can delete it.
			if h.table == table && !want[h.chain] && cur.hasChain(table, h.chain) {
				fmt.Fprintf(&in, ":%s - [0:0]\n", h.chain)
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
			if h.table != table {
				continue
			}
			pos := cur.jumpPositions(h)
			if want[h.chain] && len(pos) == 1 && pos[0] == 1 {
				continue
			}
			for range pos {
				fmt.Fprintf(&in, "-D %s -j %s\n", h.from, h.chain)
			}
			if want[h.chain] {
				fmt.Fprintf(&in, "-I %s 1 -j %s\n", h.from, h.chain)
			} else if cur.hasChain(table, h.chain) {
				fmt.Fprintf(&in, "-X %s\n", h.chain)
			}
		}
		fmt.Fprintln(&in, "COMMIT")
	}
	return in.String()
}

func (b *iptBackend) restore(f Family, input string) error {
	cmd := exec.Command(b.bin(f)+"-restore", "--noflush", fmt.Sprintf("--wait=%d", xtablesWaitSeconds))
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s-restore: %v: %s", b.bin(f), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// savedRules is one family's iptables-save output: per table, the chains
// that exist and the rules of each chain in order, in `iptables -S` form.
type savedRules map[string]map[string][]string

func (s savedRules) hasChain(table, chain string) bool {
	_, ok := s[table][chain]
	return ok
}

// jumpPositions returns the 1-based positions of the jumps h.from -> h.chain.
func (s savedRules) jumpPositions(h hook) []int {
	var pos []int
	for i, r := range s[h.table][h.from] {
		if r == jumpSpec(h) {
			pos = append(pos, i+1)
		}
	}
	return pos
}

// save runs <bin>-save for the family. Tables the kernel has not
// instantiated in this netns are absent from the output: nothing of ours
// can be in them.
func (b *iptBackend) save(f Family) (savedRules, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(b.bin(f) + "-save")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s-save: %v: %s (is the %s binary installed on the host?)", b.bin(f), err, strings.TrimSpace(stderr.String()), b.bin(f))
	}
	return parseSave(stdout.String()), nil
}

func parseSave(out string) savedRules {
	res := savedRules{}
	var cur map[string][]string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			cur = map[string][]string{}
			res[l[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(l, ":"):
			if f := strings.Fields(l[1:]); len(f) > 0 {
				cur[f[0]] = cur[f[0]][:0:0]
			}
		case strings.HasPrefix(l, "-A "):
			if f := strings.Fields(l); len(f) > 1 {
				cur[f[1]] = append(cur[f[1]], l)
			}
		}
	}
	return res
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
	cur, err := b.save(f)
	if err != nil {
		if tolerant {
			return nil
		}
		return err
	}
	ours := false
	for _, h := range iptHooks {
		ours = ours || cur.hasChain(h.table, h.chain) || len(cur.jumpPositions(h)) > 0
	}
	if !ours {
		return nil
	}
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
		cur, err := b.save(f)
		if err != nil {
			if s.Has(f) {
				return err
			}
			continue // family unusable: nothing of ours there
		}
		want := map[string]chainRules{}
		if s.Has(f) {
			for _, cr := range render(s, f) {
				want[cr.name] = cr
			}
		}
		for _, h := range iptHooks {
			cr, wanted := want[h.chain]
			exists := cur.hasChain(h.table, h.chain)
			pos := cur.jumpPositions(h)
			if !wanted {
				if exists {
					problems = append(problems, fmt.Sprintf("%s: chain %s exists but the spec does not have it", b.bin(f), h.chain))
				}
				if len(pos) > 0 {
					problems = append(problems, fmt.Sprintf("%s: %d jumps %s -> %s, want none", b.bin(f), len(pos), h.from, h.chain))
				}
				continue
			}
			if len(pos) != 1 {
				problems = append(problems, fmt.Sprintf("%s: %d jumps %s -> %s, want exactly 1", b.bin(f), len(pos), h.from, h.chain))
			} else if pos[0] != 1 {
				problems = append(problems, fmt.Sprintf("%s: jump %s -> %s is at position %d of %s %s, want position 1 (the rules ahead of it can accept packets past the redirect)", b.bin(f), h.from, h.chain, pos[0], h.table, h.from))
			}
			if !exists {
				problems = append(problems, fmt.Sprintf("%s: chain %s missing", b.bin(f), h.chain))
				continue
			}
			var exp []string
			for _, r := range cr.rules {
				exp = append(exp, iptRule(h.chain, f, r))
			}
			if d := diffLines(exp, cur[h.table][h.chain]); d != "" {
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
	if m.hopLimit != nil {
		p = append(p, "-m", "hl", "--hl-eq", fmt.Sprint(*m.hopLimit))
	}
	if m.ctState != 0 {
		p = append(p, "-m", "conntrack", "--ctstate", ctStateNames(m.ctState, ",", map[uint32]string{ctInvalid: "INVALID", ctRelated: "RELATED"}))
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
