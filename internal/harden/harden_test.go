package harden

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/testutil/ptracetest"
)

// childEnv selects what the re-executed test binary does instead of
// running the tests (see child).
const childEnv = "HOLDFAST_HARDEN_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child runs in the re-executed test binary. "control" and "hardened"
// raise their core limit as far as allowed (so that only hardening can
// lower it), the hardened one then calls Apply; both print one line
// "ready CORE_LIMIT DUMPABLE" and wait for a signal. "report" calls Apply
// and prints the report as JSON.
func child(mode string) int {
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_CORE, &lim)
	lim.Cur = lim.Max
	unix.Setrlimit(unix.RLIMIT_CORE, &lim)
	switch mode {
	case "report":
		json.NewEncoder(os.Stdout).Encode(Apply())
		return 0
	case "hardened":
		Apply()
	case "control":
	default:
		fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
		return 2
	}
	unix.Getrlimit(unix.RLIMIT_CORE, &lim)
	d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	fmt.Printf("ready %d %d\n", lim.Cur, d)
	var b [1]byte
	os.Stdin.Read(b[:]) // blocks until the test signals the process
	return 0
}

type proc struct {
	cmd     *exec.Cmd
	dir     string // working directory: where a relative core_pattern writes
	limit   uint64 // the core limit the child reported
	dumping int    // PR_GET_DUMPABLE as the child reported it
	stdin   *os.File
}

// startChild starts the test binary in mode with GOTRACEBACK=crash (so
// SIGABRT ends in a core dump where one is allowed) in an empty directory
// and waits for its ready line.
func startChild(t *testing.T, mode string) *proc {
	t.Helper()
	p := &proc{dir: t.TempDir()}
	cmd := exec.Command(os.Args[0])
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "GOTRACEBACK=crash")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = r
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = new(strings.Builder) // the crash traceback
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	p.cmd, p.stdin = cmd, w
	t.Cleanup(func() { cmd.Process.Kill(); w.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("%s child: no ready line: %v", mode, err)
	}
	if _, err := fmt.Sscanf(line, "ready %d %d\n", &p.limit, &p.dumping); err != nil {
		t.Fatalf("%s child: bad ready line %q: %v", mode, line, err)
	}
	return p
}

// procField returns the value of "NAME:" in /proc/PID/status.
func procField(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s line", pid, name)
	return ""
}

// threadsField returns the value of the named line of each thread's
// /proc/PID/task/TID/status.
func threadsField(t *testing.T, pid int, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		if err != nil {
			continue // the thread has exited
		}
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				vals = append(vals, strings.TrimSpace(v))
			}
		}
	}
	return vals
}

// coreLimits returns the soft and hard "Max core file size" of
// /proc/PID/limits.
func coreLimits(t *testing.T, pid int) (string, string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "Max core file size"); ok {
			f := strings.Fields(v)
			if len(f) >= 2 {
				return f[0], f[1]
			}
		}
	}
	t.Fatalf("/proc/%d/limits has no core size line:\n%s", pid, b)
	return "", ""
}

// abort sends SIGABRT and returns whether the kernel reports a core dump
// in the exit status, and the files left in the child's directory.
func (p *proc) abort(t *testing.T) (bool, []string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
		t.Fatalf("child did not die of SIGABRT: %v", p.cmd.ProcessState)
	}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return ws.CoreDump(), names
}

// TestApplyObservedFromOutside checks the measures from outside the
// process, against an unhardened control child started the same way: the
// kernel's view of its limits and no-new-privs flag, and that SIGABRT
// leaves no core dump while the control's does (where core_pattern writes
// a file into the crashing process's directory; a piped or absolute
// pattern would hand the control's dump to a system handler, so there the
// limits and flags are what is asserted).
func TestApplyObservedFromOutside(t *testing.T) {
	ctl := startChild(t, "control")
	hard := startChild(t, "hardened")

	if soft, max := coreLimits(t, hard.cmd.Process.Pid); soft != "0" || max != "0" {
		t.Errorf("hardened child: core file size limit %s/%s, want 0/0", soft, max)
	}
	// No new privileges is per thread: every thread must have it.
	if got := threadsField(t, hard.cmd.Process.Pid, "NoNewPrivs"); len(got) < 2 || slices.ContainsFunc(got, func(v string) bool { return v != "1" }) {
		t.Errorf("hardened child: NoNewPrivs by thread %v, want 1 on every one (of several)", got)
	}
	if hard.dumping != 0 {
		t.Errorf("hardened child: PR_GET_DUMPABLE %d, want 0", hard.dumping)
	}
	// Linked with cgo, a constructor sets no new privileges before the Go
	// runtime starts a thread (nnp_cgo_linux.go): the control child has it
	// too, as every process of this binary does, and the control for the
	// reading is then this test's parent, which is not of this binary.
	want := map[bool]string{true: "1", false: "0"}[nnpAtLoad]
	if got := threadsField(t, ctl.cmd.Process.Pid, "NoNewPrivs"); len(got) == 0 || slices.ContainsFunc(got, func(v string) bool { return v != want }) {
		t.Errorf("control child: NoNewPrivs by thread %v, want %s on every one", got, want)
	}
	if nnpAtLoad {
		if got := procField(t, os.Getppid(), "NoNewPrivs"); got != "0" {
			t.Errorf("this test's parent: NoNewPrivs %s, want 0 (set by the environment? then this test cannot tell the binary's doing)", got)
		}
	}
	if ctl.dumping != 1 {
		t.Errorf("control child: PR_GET_DUMPABLE %d, want 1", ctl.dumping)
	}
	if soft, _ := coreLimits(t, ctl.cmd.Process.Pid); soft == "0" {
		t.Errorf("control child: core file size limit 0; the control must be able to dump")
	}

	pattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	pat := strings.TrimSpace(string(pattern))
	dumped, files := hard.abort(t)
	if dumped || len(files) > 0 {
		t.Errorf("hardened child dumped core after SIGABRT (core dump flag %v, files %v)", dumped, files)
	}
	if pat == "" || strings.HasPrefix(pat, "|") || strings.Contains(pat, "/") {
		t.Logf("core_pattern %q does not write into the process's directory: core-file comparison not made, limits and flags asserted", pat)
		return
	}
	dumped, files = ctl.abort(t)
	if !dumped || len(files) == 0 {
		t.Errorf("control child left no core after SIGABRT (core dump flag %v, files %v): the hardened child's result proves nothing", dumped, files)
	}
}

// TestApplyReport checks Apply's own report, untraced and traced.
func TestApplyReport(t *testing.T) {
	run := func(traced bool) Report {
		t.Helper()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=report")
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		if traced {
			ws, err := ptracetest.Run(cmd)
			if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("traced child: %v, status %v: %s", err, ws, out)
			}
		} else if err := cmd.Run(); err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		var r Report
		if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
			t.Fatalf("child report %q: %v", out, err)
		}
		return r
	}

	r := run(false)
	if !r.InEffect() || r.Missing() != "" || len(r.Measures) != 3 {
		t.Errorf("untraced: measures %+v not all in effect", r.Measures)
	}
	if r.Traced() || r.TracerError != "" || r.Refusal() != nil {
		t.Errorf("untraced: tracer %d (%q), refusal %v; want none", r.TracerPID, r.TracerError, r.Refusal())
	}

	r = run(true)
	// TracerPid names the tracing thread; it belongs to the test process.
	if tgid := procField(t, r.TracerPID, "Tgid"); r.TracerPID == 0 || tgid != fmt.Sprint(os.Getpid()) {
		t.Errorf("traced: TracerPid %d (of process %s), want a thread of the test process %d", r.TracerPID, tgid, os.Getpid())
	}
	err := r.Refusal()
	if !errors.Is(err, ErrTraced) || !strings.Contains(err.Error(), "traced") {
		t.Errorf("traced: refusal %v, want ErrTraced", err)
	}
	if !r.InEffect() {
		t.Errorf("traced: measures %+v not all in effect", r.Measures)
	}
}

func TestTracerParse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		status  string
		pid     int
		wantErr bool
	}{
		{"Name:\tx\nTracerPid:\t0\nUid:\t0\n", 0, false},
		{"Name:\tx\nTracerPid:\t4242\n", 4242, false},
		{"Name:\tx\n", 0, true},
		{"TracerPid:\tabc\n", 0, true},
		{"TracerPid:\t-3\n", 0, true},
	} {
		p := filepath.Join(dir, "status")
		if err := os.WriteFile(p, []byte(tc.status), 0o600); err != nil {
			t.Fatal(err)
		}
		pid, e := tracer(p)
		if pid != tc.pid || (e != "") != tc.wantErr {
			t.Errorf("%q: pid %d, error %q; want %d, error %v", tc.status, pid, e, tc.pid, tc.wantErr)
		}
	}
	if _, e := tracer(filepath.Join(dir, "missing")); e == "" {
		t.Error("missing status file: no error")
	}
}

func TestReportWithoutMeasures(t *testing.T) {
	if (Report{}).InEffect() {
		t.Error("an empty report claims hardening in effect")
	}
	r := Report{Measures: []Measure{{Name: MeasureCoreLimit, InEffect: true}, {Name: MeasureDumpable, Error: "EPERM"}}}
	if r.InEffect() || !strings.Contains(r.Missing(), "dumpable (EPERM)") {
		t.Errorf("partial report: in effect %v, missing %q", r.InEffect(), r.Missing())
	}
}
