package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/testutil/ptracetest"
)

// cliRun runs the holdfast binary (this test binary under that name) with
// env, traced by the test when traced is set, and returns its exit code,
// standard output and standard error.
func cliRun(t *testing.T, env []string, traced bool, args ...string) (int, string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holdfast")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	var out, errb strings.Builder
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errb
	if traced {
		ws, err := ptracetest.Run(cmd)
		if err != nil || !ws.Exited() {
			t.Fatalf("traced holdfast %v: %v, status %v\n%s", args, err, ws, errb.String())
		}
		return ws.ExitStatus(), out.String(), errb.String()
	}
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("holdfast %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

type postureJSON struct {
	posture.Report
	Failed []string `json:"failed"`
}

func runPosture(t *testing.T, traced bool) (int, postureJSON) {
	t.Helper()
	code, out, errs := cliRun(t, policyTestEnv(t), traced, "posture", "--json")
	var p postureJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("posture --json: exit %d, %v\n%s\n%s", code, err, out, errs)
	}
	return code, p
}

func value(t *testing.T, p postureJSON, name string) posture.Check {
	t.Helper()
	c, ok := p.Get(name)
	if !ok {
		t.Fatalf("posture --json has no check %s", name)
	}
	return c
}

// TestPostureMatchesHost compares `holdfast posture --json` on this
// machine with sources the test reads itself.
func TestPostureMatchesHost(t *testing.T) {
	code, p := runPosture(t, false)

	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	arm := false
	for l := range strings.Lines(string(cpuinfo)) {
		k, v, _ := strings.Cut(l, ":")
		if k = strings.TrimSpace(k); k == "flags" || k == "Features" {
			arm = k == "Features"
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	if len(flags) == 0 {
		t.Fatal("test: no flags line in /proc/cpuinfo")
	}
	presence := map[bool]string{true: "present", false: "absent"}
	aes, pclmul := "aes", "pclmulqdq"
	if arm {
		pclmul = "pmull"
	}
	if got, want := value(t, p, posture.CheckAES).Value, presence[flags[aes]]; got != want {
		t.Errorf("cpu.aes %q, /proc/cpuinfo says %q", got, want)
	}
	if got, want := value(t, p, posture.CheckPCLMUL).Value, presence[flags[pclmul]]; got != want {
		t.Errorf("cpu.pclmul %q, /proc/cpuinfo says %q", got, want)
	}

	hyp := value(t, p, posture.CheckHypervisor).Value
	if !arm {
		if want := map[bool]string{true: "yes", false: "no"}[flags["hypervisor"]]; hyp != want {
			t.Errorf("hypervisor.present %q, the cpuinfo hypervisor flag says %q", hyp, want)
		}
	}
	if sdv, err := exec.LookPath("systemd-detect-virt"); err == nil {
		// --vm: a container inside a VM still reports the VM. Exit status 1
		// with "none" means no VM.
		out, _ := exec.Command(sdv, "--vm").Output()
		virt := strings.TrimSpace(string(out))
		if virt == "" {
			t.Fatalf("systemd-detect-virt --vm printed nothing")
		}
		if want := map[bool]string{true: "no", false: "yes"}[virt == "none"]; hyp != want {
			t.Errorf("hypervisor.present %q, systemd-detect-virt --vm says %q", hyp, virt)
		}
		t.Logf("systemd-detect-virt --vm: %s; hypervisor.present: %s", virt, hyp)
	} else {
		t.Logf("systemd-detect-virt not installed: hypervisor.present compared with the cpuinfo flag only")
	}

	swaps, err := os.ReadFile("/proc/swaps")
	if err != nil {
		t.Fatal(err)
	}
	active := len(strings.Split(strings.TrimSpace(string(swaps)), "\n")) > 1
	if got, want := value(t, p, posture.CheckSwapActive).Value, map[bool]string{true: "yes", false: "no"}[active]; got != want {
		t.Errorf("swap.active %q, /proc/swaps says %q", got, want)
	}

	pattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := value(t, p, posture.CheckCoreHandler).Value, strings.TrimSpace(string(pattern)); got != want {
		t.Errorf("coredump.handler %q, core_pattern is %q", got, want)
	}

	if c := value(t, p, posture.CheckHardening); c.Status != posture.Pass {
		t.Errorf("process.hardening %s (%s), want pass", c.Status, c.Detail)
	}
	if code != exitOK || len(p.Failed) != 0 {
		t.Errorf("untraced posture: exit %d, failed %v; want 0 and none", code, p.Failed)
	}
	if len(p.Checks) != len(posture.Names()) {
		t.Errorf("%d checks, want %d", len(p.Checks), len(posture.Names()))
	}

	// The same command traced: hardening fails and the exit code says so.
	code, p = runPosture(t, true)
	if c := value(t, p, posture.CheckHardening); c.Status != posture.Fail || c.Value != "traced" {
		t.Errorf("traced posture: process.hardening %s %q, want fail traced", c.Status, c.Value)
	}
	if code != exitPosture || strings.Join(p.Failed, ",") != posture.CheckHardening {
		t.Errorf("traced posture: exit %d, failed %v; want %d and process.hardening", code, p.Failed, exitPosture)
	}
}

// TestPostureText checks the text report: a line per check and the
// verdict of the default policy, exit 0.
func TestPostureText(t *testing.T) {
	code, out, errs := cliRun(t, policyTestEnv(t), false, "posture")
	if code != exitOK {
		t.Fatalf("posture: exit %d\n%s", code, errs)
	}
	if n := strings.Count(out, "\n"); n != len(posture.Names())+1 || !strings.Contains(out, "\npolicy \"baseline\" (the default): pass") {
		t.Errorf("posture printed %d lines, want %d and the verdict:\n%s", n, len(posture.Names()), out)
	}
	for _, name := range []string{posture.CheckAES, posture.CheckCVMType, posture.CheckHardening} {
		if !strings.Contains(out, " "+name+" ") {
			t.Errorf("posture text lacks %s:\n%s", name, out)
		}
	}
}

// TestTracedRefused: commands that touch keys refuse to run under a
// tracer (exit 7, naming tracing) before asking for the passphrase; the
// same commands untraced succeed.
func TestTracedRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	env := append(os.Environ(), "HOLDFAST_HOME="+home, "HOLDFAST_PASSPHRASE=traced test passphrase")

	// init traced: refused, nothing created.
	code, _, errs := cliRun(t, env, true, "init", "-q")
	if code != exitRefused || !strings.Contains(errs, "traced") {
		t.Errorf("traced init: exit %d, stderr %q; want %d naming tracing", code, errs, exitRefused)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("traced init created %s (%v)", home, err)
	}

	if code, _, errs := cliRun(t, env, false, "init", "-q"); code != exitOK {
		t.Fatalf("init: exit %d\n%s", code, errs)
	}
	if code, _, errs := cliRun(t, env, false, "ls"); code != exitOK {
		t.Fatalf("ls untraced: exit %d\n%s", code, errs)
	}
	code, out, errs := cliRun(t, env, true, "ls")
	if code != exitRefused || !strings.Contains(errs, "holdfast: error: refusing to handle keys: this process is being traced") ||
		!strings.Contains(errs, "holdfast: hint: ") {
		t.Errorf("traced ls: exit %d, stderr %q; want %d naming tracing", code, errs, exitRefused)
	}
	if out != "" {
		t.Errorf("traced ls printed %q", out)
	}
	if strings.Contains(errs, "traced test") {
		t.Errorf("the passphrase appears in the error output")
	}
}
