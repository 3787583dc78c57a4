package enforce

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// brokenApply wraps a real backend and makes its Apply fail after the real
// rules went in, standing in for a kernel that refuses part of a batch (a
// real kernel here accepts everything, so the failure is injected).
type brokenApply struct{ redirect.Backend }

func (b brokenApply) Apply(s redirect.Spec) error {
	if err := b.Backend.Apply(s); err != nil {
		return err
	}
	return errors.New("injected: kernel refused the batch")
}

// TestApplyFallsBackAndCleansUp: when the first backend fails, its leftovers
// are removed, the failure is recorded and the next backend is used.
func TestApplyFallsBackAndCleansUp(t *testing.T) {
	testenv.Root(t, "network namespaces, netfilter")
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close(); _ = testutils.UnmountNS(n) }()
	newBackend := func(name string) (redirect.Backend, error) {
		b, err := redirect.New(name)
		if err != nil || name != redirect.BackendNFTables {
			return b, err
		}
		return brokenApply{b}, nil
	}
	spec := redirect.DefaultSpec(redirect.IPv4)
	b, attempts, err := Apply(n, newBackend, []string{redirect.BackendNFTables, redirect.BackendIPTablesLegacy}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != redirect.BackendIPTablesLegacy {
		t.Fatalf("chose %s, want the fallback iptables-legacy", b.Name())
	}
	if len(attempts) != 1 || !strings.Contains(attempts[0], "nftables: injected") {
		t.Fatalf("attempts = %v", attempts)
	}
	err = n.Do(func(ns.NetNS) error {
		nft, _ := redirect.New(redirect.BackendNFTables)
		if nft.Verify(spec) == nil {
			return errors.New("the failed nftables rules were left in the netns")
		}
		return b.Verify(spec)
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every backend failing is an error naming each one.
	allBroken := func(name string) (redirect.Backend, error) {
		b, err := redirect.New(name)
		return brokenApply{b}, err
	}
	_, _, err = Apply(n, allBroken, []string{redirect.BackendNFTables, redirect.BackendIPTablesNFT}, spec)
	if err == nil || !strings.Contains(err.Error(), "nftables: injected") || !strings.Contains(err.Error(), "iptables-nft: injected") {
		t.Fatalf("all failing = %v", err)
	}
	if !errors.Is(err, ErrNotProgrammed) {
		t.Fatalf("all failing = %v; want ErrNotProgrammed", err)
	}
	// No backend at all (the node state lists none working) is refused too.
	if _, _, err = Apply(n, redirect.New, nil, spec); !errors.Is(err, ErrNotProgrammed) {
		t.Fatalf("no backends = %v; want ErrNotProgrammed", err)
	}
}
