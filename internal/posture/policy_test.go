package posture

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestNamesMatchRun(t *testing.T) {
	r := Run(Options{Root: tree(t, good), Hardening: hardened})
	var got []string
	for _, c := range r.Checks {
		got = append(got, c.Name)
	}
	if !slices.Equal(got, Names()) {
		t.Errorf("Run reports %v,\nNames() is  %v", got, Names())
	}
}

func TestProfiles(t *testing.T) {
	if got := Profiles(); !slices.Equal(got, []string{ProfileBaseline, ProfileConfidential}) {
		t.Errorf("Profiles() = %v", got)
	}
	const R, W, I = Require, LevelWarn, LevelInfo
	want := map[string][2]Level{ // baseline, confidential
		CheckAES:           {W, W},
		CheckPCLMUL:        {W, W},
		CheckHypervisor:    {I, I},
		CheckVendor:        {I, I},
		CheckCVMType:       {I, R},
		CheckAttestation:   {I, R},
		CheckSwapActive:    {I, I},
		CheckSwapEncrypted: {W, R},
		CheckHibernation:   {W, R},
		CheckCoreHandler:   {W, W},
		CheckKdump:         {W, R},
		CheckLockdown:      {I, W},
		CheckPtraceScope:   {I, W},
		CheckMitigations:   {I, W},
		CheckHardening:     {R, R},
		CheckKeyMemory:     {I, W},
	}
	if len(want) != len(Names()) {
		t.Fatalf("test covers %d checks, there are %d", len(want), len(Names()))
	}
	for i, name := range []string{ProfileBaseline, ProfileConfidential} {
		p, ok := Profile(name)
		if !ok || p.Name != name {
			t.Fatalf("Profile(%q) = %v, %v", name, p, ok)
		}
		for _, c := range Names() {
			if got := p.Level(c); got != want[c][i] {
				t.Errorf("%s: %s is %s, want %s", name, c, got, want[c][i])
			}
		}
	}
	if _, ok := Profile("paranoid"); ok {
		t.Error(`Profile("paranoid") exists`)
	}
	// A profile handed out is a copy.
	p, _ := Profile(ProfileBaseline)
	p.levels[CheckHardening] = Ignore
	if q, _ := Profile(ProfileBaseline); q.Level(CheckHardening) != Require {
		t.Error("changing a returned profile changed the built-in one")
	}
}

func TestParse(t *testing.T) {
	const file = `# Confidential, but this fleet has no attestation driver yet.
profile: confidential

cvm.attestation   warn    # until the driver ships
kernel.lockdown:  require
ptrace.scope ignore
	cpu.mitigations	info
`
	p, err := Parse("fleet.policy", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "fleet.policy" {
		t.Errorf("Name %q", p.Name)
	}
	conf, _ := Profile(ProfileConfidential)
	changed := map[string]Level{CheckAttestation: LevelWarn, CheckLockdown: Require, CheckPtraceScope: Ignore, CheckMitigations: LevelInfo}
	for _, n := range Names() {
		want, ok := changed[n]
		if !ok {
			want = conf.Level(n)
		}
		if got := p.Level(n); got != want {
			t.Errorf("%s: %s, want %s", n, got, want)
		}
	}

	// Without a profile line the base is baseline; an empty file is
	// baseline.
	base, _ := Profile(ProfileBaseline)
	for _, file := range []string{"", "# nothing\n\n", "cvm.type require\n"} {
		p, err := Parse("p", strings.NewReader(file))
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		for _, n := range Names() {
			want := base.Level(n)
			if n == CheckCVMType && file == "cvm.type require\n" {
				want = Require
			}
			if got := p.Level(n); got != want {
				t.Errorf("%q: %s is %s, want %s", file, n, got, want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		line int
		msg  string
	}{
		{"cvm.type require\ncvm.typo warn\n", 2, `unknown check "cvm.typo"`},
		{"# c\n\nswap.encrypted requird\n", 3, `swap.encrypted: unknown level "requird" (want require, warn, info or ignore)`},
		{"profile paranoid\n", 1, `unknown profile "paranoid" (want baseline or confidential)`},
		{"kdump warn\nprofile baseline\n", 2, "the profile line must come before any check"},
		{"profile baseline\nprofile confidential\n", 2, "a second profile line (the first is line 1)"},
		{"kdump warn\nhibernation warn\nkdump ignore\n", 3, "kdump is already set on line 1"},
		{"kdump\n", 1, "want `CHECK LEVEL` or `profile NAME`"},
		{"kdump warn info\n", 1, "want `CHECK LEVEL` or `profile NAME`"},
		{"profile:\n", 1, "want `CHECK LEVEL` or `profile NAME`"},
		{"hypervisor.vendor require\n", 1, "hypervisor.vendor is a fact, never judged: it can only be info or ignore"},
		{"hypervisor.vendor warn\n", 1, "it can only be info or ignore"},
		{"Kdump warn\n", 1, `unknown check "Kdump"`},
	} {
		_, err := Parse("p.policy", strings.NewReader(tc.file))
		if err == nil {
			t.Errorf("%q: parsed", tc.file)
			continue
		}
		prefix := "policy file p.policy, line " + strconv.Itoa(tc.line) + ": "
		if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %q, want %q…%q", tc.file, err, prefix, tc.msg)
		}
		if !errors.Is(err, ErrPolicyFile) {
			t.Errorf("%q: error does not wrap ErrPolicyFile", tc.file)
		}
	}
	// Control: lines like those above, without their mistakes, parse.
	if _, err := Parse("p", strings.NewReader("profile baseline\nkdump warn\nhibernation warn\nhypervisor.vendor ignore\nswap.encrypted require\n")); err != nil {
		t.Errorf("control: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	// A file named like a profile is a file only when written as a path.
	file := filepath.Join(dir, "confidential")
	if err := os.WriteFile(file, []byte("profile baseline\nkdump require\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	p, err := Load("confidential")
	if err != nil || p.Name != ProfileConfidential || p.Level(CheckCVMType) != Require {
		t.Errorf("Load(confidential) = %v, %v: want the profile", p, err)
	}
	p, err = Load("./confidential")
	if err != nil || p.Name != "./confidential" || p.Level(CheckCVMType) != LevelInfo || p.Level(CheckKdump) != Require {
		t.Errorf("Load(./confidential) = %v, %v: want the file", p, err)
	}
	_, err = Load("nosuch")
	if !errors.Is(err, ErrPolicyFile) || !strings.Contains(err.Error(), `no policy profile or file "nosuch" (profiles: baseline, confidential)`) {
		t.Errorf("Load(nosuch): %v", err)
	}
}

// TestTrusted: a policy file someone other than this user or root could
// change is refused, whoever the current user is; each refusal has an
// accepted case beside it that differs only in the owner or mode.
func TestTrusted(t *testing.T) {
	const me, other = 1000, 1001
	link := func(uid int) *fileMeta { return &fileMeta{uid, fs.ModeSymlink | 0o777} }
	for _, tc := range []struct {
		file fileMeta
		link *fileMeta
		me   int
		want string // "" for trusted, else part of the message
	}{
		{fileMeta{me, 0o644}, nil, me, ""},
		{fileMeta{me, 0o600}, nil, me, ""},
		{fileMeta{me, 0o400}, nil, me, ""},
		{fileMeta{0, 0o644}, nil, me, ""},
		{fileMeta{me, 0o664}, nil, me, "policy file p is writable by group or others (mode 0664), who could lower what it requires; chmod go-w p"},
		{fileMeta{me, 0o666}, nil, me, "(mode 0666)"},
		{fileMeta{me, 0o620}, nil, me, "(mode 0620)"},
		{fileMeta{me, 0o602}, nil, me, "(mode 0602)"},
		{fileMeta{0, 0o646}, nil, me, "(mode 0646)"},
		{fileMeta{me, fs.ModeSetuid | 0o755}, nil, me, ""},
		{fileMeta{other, 0o644}, nil, me, "policy file p is owned by uid 1001, neither yours (uid 1000) nor root's, who could lower what it requires; use a copy of your own, or have root own it (chown root p)"},
		{fileMeta{other, 0o600}, nil, me, "owned by uid 1001"},
		{fileMeta{me, 0o644}, nil, 0, "owned by uid 1000, neither yours (uid 0) nor root's"},
		{fileMeta{0, 0o644}, nil, 0, ""},
		// Through a symbolic link: the link's owner could point it
		// elsewhere; the file is judged as above.
		{fileMeta{0, 0o644}, link(me), me, ""},
		{fileMeta{me, 0o600}, link(0), me, ""},
		{fileMeta{me, 0o644}, link(other), me, "policy file p is a symbolic link owned by uid 1001, neither yours (uid 1000) nor root's, who could lower what it requires; replace it with a link or a copy of your own"},
		{fileMeta{me, 0o666}, link(me), me, "policy file p is a symbolic link to a file writable by group or others (mode 0666), who could lower what it requires; chmod go-w p"},
		{fileMeta{other, 0o644}, link(me), me, "is a symbolic link to a file owned by uid 1001"},
	} {
		err := trusted("p", tc.file, tc.link, tc.me)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v, link %v, me %d: %v", tc.file, tc.link, tc.me, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrUntrusted)):
			t.Errorf("%+v, link %v, me %d: %v; want an ErrUntrusted with %q", tc.file, tc.link, tc.me, err, tc.want)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, name := range Profiles() {
		p, _ := Profile(name)
		q, err := Parse(name, strings.NewReader(p.Format()))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, p.Format())
		}
		for _, n := range Names() {
			if p.Level(n) != q.Level(n) {
				t.Errorf("%s: %s %s after a round trip, was %s", name, n, q.Level(n), p.Level(n))
			}
		}
	}
}

// cvmHost is a confidential VM where everything passes (the hypervisor is
// present, as it always is in a confidential VM).
var cvmHost = []Check{
	{CheckAES, Pass, "present", "d"},
	{CheckPCLMUL, Pass, "present", "d"},
	{CheckHypervisor, Warn, "yes", "d"},
	{CheckVendor, Info, "KVM", "d"},
	{CheckCVMType, Pass, CVMSEVSNP, "d"},
	{CheckAttestation, Pass, "available", "d"},
	{CheckSwapActive, Pass, "no", "d"},
	{CheckSwapEncrypted, Pass, "n/a", "d"},
	{CheckHibernation, Pass, "unsupported", "d"},
	{CheckCoreHandler, Pass, "core", "d"},
	{CheckKdump, Pass, "not-loaded", "d"},
	{CheckLockdown, Pass, "confidentiality", "d"},
	{CheckPtraceScope, Pass, "1", "d"},
	{CheckMitigations, Pass, "", "d"},
	{CheckHardening, Pass, "in-effect", "d"},
}

// crafted returns cvmHost with some checks replaced (and those with an empty
// Status removed).
func crafted(over ...Check) Report {
	var r Report
	for _, c := range cvmHost {
		if i := slices.IndexFunc(over, func(o Check) bool { return o.Name == c.Name }); i >= 0 {
			c = over[i]
		}
		if c.Status != "" {
			r.Checks = append(r.Checks, c)
		}
	}
	return r
}

// vm is an ordinary virtual machine: a hypervisor, no confidential
// computing, lockdown none, the rest fine.
var vm = []Check{
	{CheckCVMType, Warn, CVMNone, "d"},
	{CheckAttestation, Info, "n/a", "d"},
	{CheckLockdown, Warn, "none", "d"},
}

// cloudVM is a typical cloud VM (like the test host): vm, with no Yama,
// lockdown unreadable and a CPU vulnerability the guest cannot mitigate,
// but no swap, hibernation, crash kernel or core dump handler.
var cloudVM = []Check{
	{CheckHypervisor, Warn, "yes", "d"},
	{CheckCVMType, Warn, CVMNone, "d"},
	{CheckAttestation, Info, "n/a", "d"},
	{CheckLockdown, Unknown, "", "d"},
	{CheckPtraceScope, Warn, "absent", "d"},
	{CheckMitigations, Warn, "spec_rstack_overflow", "d"},
}

func TestEvaluate(t *testing.T) {
	custom, err := Parse("custom", strings.NewReader("profile confidential\ncvm.type warn\ncvm.attestation ignore\nkernel.lockdown ignore\n"))
	if err != nil {
		t.Fatal(err)
	}
	cvmWarn, err := Parse("cvm-warn", strings.NewReader("cvm.type warn\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy string // a profile, "custom" or "cvm-warn"
		report Report
		unmet  string // names, comma-separated
		warned string
	}{
		{"confidential VM, baseline", ProfileBaseline, crafted(), "", ""},
		{"confidential VM, confidential", ProfileConfidential, crafted(), "", ""},
		// baseline is quiet where nothing but the environment is weak ...
		{"VM, baseline", ProfileBaseline, crafted(vm...), "", ""},
		{"cloud VM, baseline", ProfileBaseline, crafted(cloudVM...), "", ""},
		// ... which a policy file can make a warning, and confidential does.
		{"cloud VM, cvm.type warn", "cvm-warn", crafted(cloudVM...), "", "cvm.type"},
		{"cloud VM, confidential", ProfileConfidential, crafted(cloudVM...), "cvm.type,cvm.attestation", "kernel.lockdown,ptrace.scope,cpu.mitigations"},
		{"VM, confidential", ProfileConfidential, crafted(vm...), "cvm.type,cvm.attestation", "kernel.lockdown"},
		{"VM, custom", "custom", crafted(vm...), "", "cvm.type"},
		{"bare metal, baseline", ProfileBaseline, crafted(Check{CheckHypervisor, Pass, "no", "d"}, Check{CheckCVMType, Info, CVMNone, "d"}, Check{CheckAttestation, Info, "n/a", "d"}), "", ""},
		{"bare metal, confidential", ProfileConfidential, crafted(Check{CheckHypervisor, Pass, "no", "d"}, Check{CheckCVMType, Info, CVMNone, "d"}, Check{CheckAttestation, Info, "n/a", "d"}), "cvm.type,cvm.attestation", ""},
		{"CVM without its device, confidential", ProfileConfidential, crafted(Check{CheckAttestation, Warn, "unavailable", "d"}), "cvm.attestation", ""},
		{"CVM, plain swap, hibernation, kdump, confidential", ProfileConfidential,
			crafted(Check{CheckSwapActive, Warn, "yes", "d"}, Check{CheckSwapEncrypted, Warn, "no", "d"}, Check{CheckHibernation, Warn, "enabled", "d"}, Check{CheckKdump, Warn, "loaded", "d"}),
			"swap.encrypted,hibernation,kdump", ""},
		{"CVM, plain swap etc., baseline", ProfileBaseline,
			crafted(Check{CheckSwapActive, Warn, "yes", "d"}, Check{CheckSwapEncrypted, Warn, "no", "d"}, Check{CheckHibernation, Warn, "enabled", "d"}, Check{CheckKdump, Warn, "loaded", "d"}),
			"", "swap.encrypted,hibernation,kdump"},
		{"CVM, encrypted swap, confidential", ProfileConfidential, crafted(Check{CheckSwapActive, Warn, "yes", "d"}, Check{CheckSwapEncrypted, Pass, "yes", "d"}), "", ""},
		{"swap unknown, confidential", ProfileConfidential, crafted(Check{CheckSwapActive, Warn, "yes", "d"}, Check{CheckSwapEncrypted, Unknown, "", "d"}), "swap.encrypted", ""},
		{"hardening incomplete", ProfileBaseline, crafted(Check{CheckHardening, Fail, "incomplete", "d"}), "process.hardening", ""},
		{"tracer unknown", ProfileBaseline, crafted(Check{CheckHardening, Warn, "tracer-unknown", "d"}), "process.hardening", ""},
		{"hardening not reported", ProfileBaseline, crafted(Check{Name: CheckHardening}), "process.hardening", ""},
		{"much unreadable, baseline", ProfileBaseline, crafted(
			Check{CheckAES, Unknown, "", "d"}, Check{CheckLockdown, Unknown, "", "d"}, Check{CheckPtraceScope, Unknown, "", "d"}),
			"", "cpu.aes"},
		{"much unreadable, confidential", ProfileConfidential, crafted(
			Check{CheckAES, Unknown, "", "d"}, Check{CheckLockdown, Unknown, "", "d"}, Check{CheckPtraceScope, Unknown, "", "d"}),
			"", "cpu.aes,kernel.lockdown,ptrace.scope"},
		{"swap file of unknown encryption, baseline", ProfileBaseline, crafted(Check{CheckSwapActive, Warn, "yes", "d"}, Check{CheckSwapEncrypted, Unknown, "", "d"}), "", "swap.encrypted"},
		{"weak CPU and kernel, baseline", ProfileBaseline, crafted(
			Check{CheckPCLMUL, Warn, "absent", "d"}, Check{CheckCoreHandler, Warn, "|x", "d"}, Check{CheckPtraceScope, Warn, "0", "d"}, Check{CheckMitigations, Warn, "mds", "d"}),
			"", "cpu.pclmul,coredump.handler"},
		{"weak CPU and kernel, confidential", ProfileConfidential, crafted(
			Check{CheckPCLMUL, Warn, "absent", "d"}, Check{CheckCoreHandler, Warn, "|x", "d"}, Check{CheckPtraceScope, Warn, "0", "d"}, Check{CheckMitigations, Warn, "mds", "d"}),
			"", "cpu.pclmul,coredump.handler,ptrace.scope,cpu.mitigations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := Profile(tc.policy)
			if !ok {
				p = map[string]*Policy{"custom": custom, "cvm-warn": cvmWarn}[tc.policy]
			}
			v := p.Evaluate(tc.report)
			if got := strings.Join(judgedNames(v.Unmet), ","); got != tc.unmet {
				t.Errorf("unmet %q, want %q", got, tc.unmet)
			}
			if got := strings.Join(judgedNames(v.Warned), ","); got != tc.warned {
				t.Errorf("warned %q, want %q", got, tc.warned)
			}
			if v.Pass() != (tc.unmet == "") || (v.Err() == nil) != v.Pass() {
				t.Errorf("Pass() %v, Err() %v", v.Pass(), v.Err())
			}
			if len(v.Checks) != len(tc.report.Checks) {
				t.Errorf("%d judged checks, report has %d", len(v.Checks), len(tc.report.Checks))
			}
			for _, j := range v.Checks {
				if j.Level != p.Level(j.Name) {
					t.Errorf("%s judged at %s, policy says %s", j.Name, j.Level, p.Level(j.Name))
				}
			}
		})
	}
}

func judgedNames(js []Judged) []string {
	var s []string
	for _, j := range js {
		s = append(s, j.Name)
	}
	return s
}

func TestUnmetError(t *testing.T) {
	p, _ := Profile(ProfileConfidential)
	err := p.Evaluate(crafted(vm...)).Err()
	const want = `policy "confidential" requires cvm.type: this host is not a confidential VM (none); run on an AMD SEV-SNP or Intel TDX guest, or choose a policy that allows it (also unmet: cvm.attestation)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	var ue *UnmetError
	if !errors.Is(err, ErrUnmet) || !errors.As(err, &ue) || strings.Join(ue.Names(), ",") != "cvm.type,cvm.attestation" {
		t.Errorf("%v: not an UnmetError naming cvm.type and cvm.attestation", err)
	}
	// Every check has its own problem text and fix.
	for _, c := range cvmHost {
		c.Status, c.Value = Warn, "v"
		if Problem(c) == c.Detail || Fix(c.Name) == Fix("nosuch") {
			if c.Name != CheckVendor {
				t.Errorf("%s: no problem text or fix of its own", c.Name)
			}
		}
	}
	if got := Problem(Check{CheckLockdown, Unknown, "", "no securityfs"}); got != "it could not be read: no securityfs" {
		t.Errorf("unknown lockdown: %q", got)
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"", "profile confidential\ncvm.attestation warn # x\n", "profile: baseline\nkdump: require\n",
		"cvm.typo warn\n", "kdump warn\nkdump warn\n", "hypervisor.vendor require\n", "profile x\n", "a b c\n",
	}
	for _, name := range Profiles() {
		p, _ := Profile(name)
		seeds = append(seeds, p.Format())
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		p, err := Parse("f", strings.NewReader(file))
		if err != nil {
			if !errors.Is(err, ErrPolicyFile) && !strings.HasPrefix(err.Error(), "reading policy file") {
				t.Fatalf("error not about the file: %v", err)
			}
			return
		}
		// What parses formats to a file that parses to the same levels.
		q, err := Parse("f", strings.NewReader(p.Format()))
		if err != nil {
			t.Fatalf("Format does not parse: %v\n%s", err, p.Format())
		}
		for _, n := range Names() {
			if p.Level(n) != q.Level(n) {
				t.Fatalf("%s: %s, after a round trip %s", n, p.Level(n), q.Level(n))
			}
			if facts[n] && (p.Level(n) == Require || p.Level(n) == LevelWarn) {
				t.Fatalf("fact %s at %s", n, p.Level(n))
			}
		}
	})
}
