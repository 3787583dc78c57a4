package main

import (
	"os"
	"path/filepath"
	"testing"
)

// A JUnit report in the shape Ginkgo v2 writes for Kubernetes' e2e.test:
// a spec filtered out by focus/skip (message exactly "skipped"), one skipped
// at run time (the reason after "skipped - "), a pass, a failure, and the
// suite-level nodes, which are not specs.
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="1" errors="0" failures="1" time="10">
  <testsuite name="Kubernetes e2e suite" package="/e2e" tests="6" disabled="1" skipped="2" errors="0" failures="1" time="10">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1"></testcase>
    <testcase name="[It] [sig-network] DNS should provide DNS for the cluster [Conformance]" classname="Kubernetes e2e suite" status="passed" time="5"></testcase>
    <testcase name="[It] [sig-storage] something else" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
    <testcase name="[It] [sig-network] Topology Hints should distribute endpoints evenly" classname="Kubernetes e2e suite" status="skipped" time="1"><skipped message="skipped - Requires &gt;= 3 zones"></skipped></testcase>
    <testcase name="[It] [sig-network] Services should be able to up and down services" classname="Kubernetes e2e suite" status="failed" time="3"><failure type="failed">waiting for service to be down timed out</failure></testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e JUnit report" classname="Kubernetes e2e suite" status="passed" time="0"></testcase>
  </testsuite>
</testsuites>`

func TestRunCountsOnlySpecsThatRan(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "junit_01.xml")
	if err := os.WriteFile(in, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sum")
	if err := run(out, in); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := map[string]string{
		"counts.txt":  "passed=1 failed=1 skipped=1 filtered-out=1\n",
		"passed.txt":  "[It] [sig-network] DNS should provide DNS for the cluster [Conformance]\n",
		"failed.txt":  "[It] [sig-network] Services should be able to up and down services\n",
		"skipped.txt": "[It] [sig-network] Topology Hints should distribute endpoints evenly\tRequires >= 3 zones\n",
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
}

func TestRunRefusesWhatIsNotJUnit(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "junit_01.xml")
	if err := os.WriteFile(in, []byte("not xml <"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(filepath.Join(dir, "sum"), in); err == nil {
		t.Fatal("run accepted a file that is not a JUnit report")
	}
	if err := run(filepath.Join(dir, "sum"), filepath.Join(dir, "absent.xml")); err == nil {
		t.Fatal("run accepted a missing report")
	}
}
