package main

import (
	"bytes"
	"strings"
	"testing"
)

const stream = `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA/ok","Output":"    a_test.go:5: quiet detail of a passing subtest\n"}
{"Action":"pass","Package":"p","Test":"TestA/ok"}
{"Action":"output","Package":"p","Test":"TestA/bad","Output":"    a_test.go:9: the reason it failed\n"}
{"Action":"fail","Package":"p","Test":"TestA/bad"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: not here\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p","Elapsed":1.5}
{"Action":"pass","Package":"q","Test":"TestC"}
{"Action":"pass","Package":"q","Elapsed":0.2}
`

func TestReport(t *testing.T) {
	var out bytes.Buffer
	if rc := run(strings.NewReader(stream), &out); rc != 1 {
		t.Errorf("exit %d for a failed test, want 1", rc)
	}
	s := out.String()
	for _, want := range []string{"== output of p TestA/bad", "the reason it failed", "FAIL\tp\t1.5s", "ok  \tq\t0.2s",
		"--- SKIP: p TestB", "--- FAIL: p TestA/bad", "go-test: 2 passed, 2 failed, 1 skipped"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "quiet detail") || strings.Contains(s, "not here") {
		t.Errorf("report shows output of tests that did not fail:\n%s", s)
	}
	// The same stream with the failure gone: exit 0.
	good := strings.NewReplacer(`"fail"`, `"pass"`).Replace(stream)
	out.Reset()
	if rc := run(strings.NewReader(good), &out); rc != 0 {
		t.Errorf("exit %d with every test passed:\n%s", rc, out.String())
	}
}

func TestReportKeepsHeadAndTail(t *testing.T) {
	var in strings.Builder
	for i := range 500 {
		in.WriteString(`{"Action":"output","Package":"p","Test":"T","Output":"line ` + string(rune('a'+i%26)) + "\\n\"}\n")
	}
	in.WriteString(`{"Action":"output","Package":"p","Test":"T","Output":"the last word\n"}` + "\n")
	in.WriteString(`{"Action":"fail","Package":"p","Test":"T"}` + "\n")
	var out bytes.Buffer
	run(strings.NewReader(in.String()), &out)
	if !strings.Contains(out.String(), "the last word") || !strings.Contains(out.String(), "lines …]") {
		t.Errorf("a long output should keep its end and say what it dropped:\n%s", out.String())
	}
}
