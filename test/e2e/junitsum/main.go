// Command junitsum sums up the JUnit report Kubernetes' e2e.test writes
// (--report-dir, junit_01.xml) for test/e2e/conformance.sh: the counts of
// specs that ran and passed, failed, or were skipped at run time, and one
// file per state with the spec names (sorted, so two runs compare with
// comm/diff).
//
//	junitsum -out DIR junit_01.xml
//
// Ginkgo writes every spec of the suite, also those the focus/skip regexes
// filtered out; those carry exactly <skipped message="skipped"/>, while a
// spec skipped at run time (e2eskipper.Skip...) says why after "skipped - ".
// Only the latter are counted as skipped.
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Time    string `xml:"time,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Type string `xml:"type,attr"`
		Text string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Type string `xml:"type,attr"`
		Text string `xml:",chardata"`
	} `xml:"error"`
}

type suites struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

func main() {
	out := flag.String("out", "", "directory for passed.txt, failed.txt, skipped.txt and counts.txt (required)")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: junitsum -out DIR junit_01.xml")
		os.Exit(2)
	}
	if err := run(*out, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "junitsum:", err)
		os.Exit(1)
	}
}

func run(out, report string) error {
	data, err := os.ReadFile(report)
	if err != nil {
		return fmt.Errorf("read the JUnit report: %w", err)
	}
	var s suites
	if err := xml.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("parse the JUnit report %s: %w", report, err)
	}
	var passed, failed, skipped []string
	filtered := 0
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			// Ginkgo's suite-level nodes ([SynchronizedBeforeSuite],
			// [ReportAfterSuite], ...) are test cases too; count specs only.
			if strings.HasPrefix(c.Name, "[SynchronizedBeforeSuite]") || strings.HasPrefix(c.Name, "[SynchronizedAfterSuite]") ||
				strings.HasPrefix(c.Name, "[BeforeSuite]") || strings.HasPrefix(c.Name, "[AfterSuite]") ||
				strings.HasPrefix(c.Name, "[ReportBeforeSuite]") || strings.HasPrefix(c.Name, "[ReportAfterSuite]") {
				if c.Failure != nil || c.Error != nil {
					failed = append(failed, c.Name)
				}
				continue
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				failed = append(failed, c.Name)
			case c.Skipped != nil && c.Skipped.Message == "skipped":
				filtered++
			case c.Skipped != nil:
				skipped = append(skipped, c.Name+"\t"+strings.TrimPrefix(c.Skipped.Message, "skipped - "))
			default:
				passed = append(passed, c.Name)
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("make the output directory: %w", err)
	}
	for name, list := range map[string][]string{"passed.txt": passed, "failed.txt": failed, "skipped.txt": skipped} {
		sort.Strings(list)
		text := strings.Join(list, "\n")
		if text != "" {
			text += "\n"
		}
		if err := os.WriteFile(filepath.Join(out, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	counts := fmt.Sprintf("passed=%d failed=%d skipped=%d filtered-out=%d\n", len(passed), len(failed), len(skipped), filtered)
	fmt.Print(counts)
	return os.WriteFile(filepath.Join(out, "counts.txt"), []byte(counts), 0o644)
}
