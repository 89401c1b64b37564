// Command testreport reads `go test -json` on stdin and prints what CI
// needs: one line per package, every failed test with its own output
// (and nothing of the tests that passed), the skipped tests by name, and
// the counts. It exits 1 if any test or package failed.
//
//	go test -json ./... | go run ./scripts/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// perTest is the output kept for one test until it ends: the head and the
// tail, so one noisy test cannot bury the others.
const headLines, tailLines = 30, 60

type buf struct {
	head, tail []string
	dropped    int
}

func (b *buf) add(s string) {
	if len(b.head) < headLines {
		b.head = append(b.head, s)
		return
	}
	b.tail = append(b.tail, s)
	if len(b.tail) > tailLines {
		b.tail = b.tail[1:]
		b.dropped++
	}
}

func (b *buf) write(w io.Writer) {
	for _, s := range b.head {
		io.WriteString(w, s)
	}
	if b.dropped > 0 {
		fmt.Fprintf(w, "        [… %d lines …]\n", b.dropped)
	}
	for _, s := range b.tail {
		io.WriteString(w, s)
	}
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout))
}

func run(in io.Reader, out io.Writer) int {
	bufs := map[string]*buf{}
	var passed, failed int
	var skipped, failedNames []string
	var pkgs []string
	failedPkg := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// go test prints build errors as plain text.
			fmt.Fprintf(out, "%s\n", line)
			failedPkg = true
			continue
		}
		id := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := bufs[id]
			if b == nil {
				b = &buf{}
				bufs[id] = b
			}
			b.add(e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				pkgs = append(pkgs, fmt.Sprintf("ok  \t%s\t%.1fs", e.Package, e.Elapsed))
			}
			delete(bufs, id)
		case "skip":
			if e.Test != "" {
				skipped = append(skipped, e.Package+" "+e.Test)
			} else {
				pkgs = append(pkgs, fmt.Sprintf("?   \t%s\t[no test files]", e.Package))
			}
			delete(bufs, id)
		case "fail":
			if e.Test != "" {
				failed++
				failedNames = append(failedNames, id)
			} else {
				failedPkg = true
				pkgs = append(pkgs, fmt.Sprintf("FAIL\t%s\t%.1fs", e.Package, e.Elapsed))
			}
			if b := bufs[id]; b != nil {
				fmt.Fprintf(out, "== output of %s\n", strings.TrimSpace(id))
				b.write(out)
			}
			delete(bufs, id)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testreport: reading go test output: %v\n", err)
		failedPkg = true
	}
	// Tests still open when the stream ended (a crash, a timeout) show
	// what they printed.
	open := make([]string, 0, len(bufs))
	for id := range bufs {
		open = append(open, id)
	}
	sort.Strings(open)
	for _, id := range open {
		if strings.HasSuffix(id, " ") {
			continue // package-level output of a package that passed
		}
		fmt.Fprintf(out, "== output of %s (never finished)\n", id)
		bufs[id].write(out)
		failedPkg = true
	}
	for _, p := range pkgs {
		fmt.Fprintln(out, p)
	}
	for _, s := range skipped {
		fmt.Fprintf(out, "--- SKIP: %s\n", s)
	}
	for _, s := range failedNames {
		fmt.Fprintf(out, "--- FAIL: %s\n", s)
	}
	fmt.Fprintf(out, "go-test: %d passed, %d failed, %d skipped\n", passed, failed, len(skipped))
	if failed > 0 || failedPkg {
		return 1
	}
	return 0
}
