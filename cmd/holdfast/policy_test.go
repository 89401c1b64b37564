package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/posture"
)

// policyTestEnv returns the environment without any HOLDFAST_ setting of the
// caller's, with a fresh home and a passphrase.
func policyTestEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOLDFAST_") {
			env = append(env, kv)
		}
	}
	return append(env, "HOLDFAST_HOME="+filepath.Join(t.TempDir(), "home"), "HOLDFAST_PASSPHRASE=posture policy test passphrase")
}

// judgedJSON is `posture --json` with the policy's verdict.
type judgedJSON struct {
	Checks                []checkJSON
	Failed, Unmet, Warned []string
	Policy                string
	PolicySource          string `json:"policy_source"`
	Verdict, Error        string
}

// checkJSON is one check of judgedJSON.
type checkJSON struct {
	Name, Status, Value, Level string
}

func runJudged(t *testing.T, env []string, args ...string) (int, judgedJSON) {
	t.Helper()
	code, out, errs := cliRun(t, env, false, append([]string{"posture", "--json"}, args...)...)
	var p judgedJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("posture --json %v: exit %d, %v\n%s\n%s", args, code, err, out, errs)
	}
	return code, p
}

// TestPosturePolicyJSON: `posture --json` gives each check its policy
// level, and the verdict and exit code follow the policy: confidential
// fails on this host (not a confidential VM), baseline passes.
func TestPosturePolicyJSON(t *testing.T) {
	env := policyTestEnv(t)
	for _, tc := range []struct {
		policy  string
		code    int
		verdict string
	}{
		{posture.ProfileConfidential, exitPosture, "fail"},
		{posture.ProfileBaseline, exitOK, "pass"}, // the positive control
	} {
		code, p := runJudged(t, env, "--policy", tc.policy)
		if code != tc.code || p.Verdict != tc.verdict || p.Policy != tc.policy || p.PolicySource != "from --policy" {
			t.Errorf("--policy %s: exit %d, verdict %q, policy %q from %q; want %d, %q", tc.policy, code, p.Verdict, p.Policy, p.PolicySource, tc.code, tc.verdict)
		}
		pol, _ := posture.Profile(tc.policy)
		var unmet, warned, names []string
		for _, c := range p.Checks {
			names = append(names, c.Name)
			if c.Level != string(pol.Level(c.Name)) {
				t.Errorf("%s: %s at level %q, the profile says %s", tc.policy, c.Name, c.Level, pol.Level(c.Name))
			}
			switch {
			case c.Level == "require" && c.Status != "pass":
				unmet = append(unmet, c.Name)
			case c.Level == "warn" && (c.Status == "warn" || c.Status == "fail" || c.Status == "unknown"):
				warned = append(warned, c.Name)
			}
		}
		if !slices.Equal(names, posture.Names()) {
			t.Errorf("%s: checks %v", tc.policy, names)
		}
		if !slices.Equal(unmet, p.Unmet) {
			t.Errorf("%s: unmet %v, the statuses say %v", tc.policy, p.Unmet, unmet)
		}
		if !slices.Equal(warned, p.Warned) {
			t.Errorf("%s: warned %v, the statuses say %v", tc.policy, p.Warned, warned)
		}
		if p.Unmet == nil || p.Warned == nil || p.Failed == nil {
			t.Errorf("%s: unmet, warned and failed must be lists, even empty", tc.policy)
		}
		if (p.Error != "") != (tc.verdict == "fail") {
			t.Errorf("%s: error %q with verdict %s", tc.policy, p.Error, p.Verdict)
		}
	}
	// The host is not a confidential VM: cvm.type is what confidential
	// names first.
	_, p := runJudged(t, env, "--policy", "confidential")
	if len(p.Unmet) == 0 || p.Unmet[0] != posture.CheckCVMType ||
		!strings.HasPrefix(p.Error, `policy "confidential" requires cvm.type: this host is not a confidential VM (none); run on an AMD SEV-SNP or Intel TDX guest`) {
		t.Errorf("confidential: unmet %v, error %q", p.Unmet, p.Error)
	}
	// The environment names the policy when the flag does not.
	code, p := runJudged(t, append(env, "HOLDFAST_POLICY=confidential"))
	if code != exitPosture || p.Policy != "confidential" || p.PolicySource != "from HOLDFAST_POLICY" {
		t.Errorf("HOLDFAST_POLICY=confidential: exit %d, policy %q from %q", code, p.Policy, p.PolicySource)
	}
	code, p = runJudged(t, env)
	if code != exitOK || p.Policy != "baseline" || p.PolicySource != "the default" {
		t.Errorf("no policy: exit %d, policy %q from %q", code, p.Policy, p.PolicySource)
	}
}

// hostRisks returns, in report order, the checks baseline warns about
// that this host actually has, read by the test from the same sources
// posture reads (swap encryption, which takes sysfs's device tree to
// tell, is taken from p).
func hostRisks(t *testing.T, p judgedJSON) []string {
	t.Helper()
	read := func(f string) (string, error) {
		b, err := os.ReadFile(f)
		return strings.TrimSpace(string(b)), err
	}
	risky := map[string]bool{}

	cpuinfo, err := read("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	flags, aes, pclmul := map[string]bool{}, "aes", "pclmulqdq"
	for l := range strings.Lines(cpuinfo) {
		k, v, _ := strings.Cut(l, ":")
		if k = strings.TrimSpace(k); k == "flags" || k == "Features" {
			if k == "Features" {
				pclmul = "pmull"
			}
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	risky[posture.CheckAES], risky[posture.CheckPCLMUL] = !flags[aes], !flags[pclmul]

	swaps, err := read("/proc/swaps")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(swaps, "\n") { // a line past the header: swap is active
		i := slices.IndexFunc(p.Checks, func(c checkJSON) bool { return c.Name == posture.CheckSwapEncrypted })
		risky[posture.CheckSwapEncrypted] = i < 0 || p.Checks[i].Status != string(posture.Pass)
	}

	state, err := read("/sys/power/state")
	resume, rerr := read("/sys/power/resume")
	risky[posture.CheckHibernation] = err != nil || slices.Contains(strings.Fields(state), "disk") && (rerr != nil || resume != "" && resume != "0:0")

	pattern, err := read("/proc/sys/kernel/core_pattern")
	suid, _ := read("/proc/sys/fs/suid_dumpable")
	risky[posture.CheckCoreHandler] = err != nil || strings.HasPrefix(pattern, "|") && suid == "2"

	kdump, err := read("/sys/kernel/kexec_crash_loaded")
	risky[posture.CheckKdump] = err == nil && kdump == "1" || err != nil && !errors.Is(err, fs.ErrNotExist)

	var risks []string
	for _, n := range posture.Names() {
		if risky[n] {
			risks = append(risks, n)
		}
	}
	return risks
}

// warnedNames returns the checks named by the one posture warning line in
// stderr, and how many such lines there are.
func warnedNames(stderr string) ([]string, int) {
	const prefix = "holdfast: warning: posture below what policy "
	var names []string
	n := 0
	for l := range strings.Lines(stderr) {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		n++
		_, list, _ := strings.Cut(l, " recommends: ")
		list, _, _ = strings.Cut(list, "; 'holdfast posture' says why")
		for _, item := range strings.Split(list, ", ") {
			name, _, _ := strings.Cut(item, " (")
			names = append(names, name)
		}
	}
	return names, n
}

// TestPolicyWarning: the default policy warns on a keyed command about
// exactly the risks the test finds on this host itself — on a sound host
// (CI's fresh VM: no swap, hibernation, crash kernel or core dump
// handler) nothing at all, although the host is no confidential VM and
// has other weaknesses of its environment. A policy file that makes those
// warn gets one warning line naming exactly what `posture` reports as
// warned under it; a policy with everything at info prints nothing.
func TestPolicyWarning(t *testing.T) {
	env := policyTestEnv(t)
	code, p := runJudged(t, env)
	if code != exitOK || p.Policy != posture.ProfileBaseline || p.PolicySource != "the default" {
		t.Fatalf("posture: exit %d, policy %q from %q; want 0 and baseline, the default", code, p.Policy, p.PolicySource)
	}
	risks := hostRisks(t, p)
	t.Logf("risks baseline warns about on this host: %v", risks)
	if !slices.Equal(p.Warned, risks) {
		t.Errorf("posture warns under baseline about %v; the host has %v", p.Warned, risks)
	}

	dir := t.TempDir()
	write := func(name, text string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	strict := write("strict.policy", "cvm.type warn\nkernel.lockdown warn\nptrace.scope warn\ncpu.mitigations warn\n")
	var lines []string
	for _, n := range posture.Names() {
		if n != posture.CheckHardening {
			lines = append(lines, n+" info")
		}
	}
	quiet := write("quiet.policy", strings.Join(lines, "\n")+"\n")

	// What the environment checks make of this host: none is warned
	// about by default, and the strict file warns about those that are
	// weak — on a VM that is no confidential VM, at least cvm.type.
	_, ps := runJudged(t, env, "--policy", strict)
	env4 := []string{posture.CheckCVMType, posture.CheckLockdown, posture.CheckPtraceScope, posture.CheckMitigations}
	var weakEnv []string
	for _, c := range ps.Checks {
		if slices.Contains(env4, c.Name) && c.Status != string(posture.Pass) && c.Status != string(posture.Info) {
			weakEnv = append(weakEnv, c.Name)
		}
	}
	t.Logf("weak environment checks on this host: %v", weakEnv)
	if len(weakEnv) == 0 || len(ps.Warned) != len(risks)+len(weakEnv) {
		t.Fatalf("under %s posture warns about %v; want the host's risks %v and weak environment checks %v, at least one", strict, ps.Warned, risks, weakEnv)
	}

	// Each policy in a home of its own, as init cannot run twice.
	for _, args := range [][]string{{"init", "-q"}, {"ls"}} {
		// The default.
		code, _, errs := cliRun(t, env, false, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d\n%s", args, code, errs)
		}
		got, n := warnedNames(errs)
		switch {
		case len(risks) == 0 && errs != "":
			t.Errorf("%v, default policy, a host without risks: stderr %q, want nothing", args, errs)
		case len(risks) > 0 && (n != 1 || !slices.Equal(got, risks)):
			t.Errorf("%v, default policy: %d warning lines naming %v, want 1 naming %v:\n%s", args, n, got, risks, errs)
		}
		for _, c := range weakEnv {
			if strings.Contains(errs, c) {
				t.Errorf("%v, default policy: stderr names %s:\n%s", args, c, errs)
			}
		}
	}
	env = policyTestEnv(t)
	for _, args := range [][]string{{"init", "-q"}, {"ls"}} {
		// The positive control: warn-level environment checks do warn, in
		// one line and nothing else.
		code, _, errs := cliRun(t, env, false, append(args, "--policy", strict)...)
		got, n := warnedNames(errs)
		if code != exitOK || n != 1 || !slices.Equal(got, ps.Warned) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v --policy %s: exit %d, %d warning lines naming %v; want 0, 1 line naming %v:\n%s", args, strict, code, n, got, ps.Warned, errs)
		}
	}
	env = policyTestEnv(t)
	for _, args := range [][]string{{"init", "-q"}, {"ls"}} {
		// Everything at info: nothing on stderr at all.
		if code, _, errs := cliRun(t, env, false, append(args, "--policy", quiet)...); code != exitOK || errs != "" {
			t.Errorf("%v under %s: exit %d, stderr %q; want 0 and nothing", args, quiet, code, errs)
		}
	}
}
