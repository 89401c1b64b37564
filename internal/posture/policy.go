package posture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
)

// Level is what a policy makes of one check.
type Level string

const (
	// Require: keys are unsealed only when the check passes (status pass;
	// warn, fail, unknown and info all fall short).
	Require Level = "require"
	// LevelWarn: a check that warns, fails or cannot be read is reported
	// as a warning; keys are unsealed anyway.
	LevelWarn Level = "warn"
	// LevelInfo: shown by `holdfast posture`, never printed by keyed
	// commands.
	LevelInfo Level = "info"
	// Ignore: as info; says the operator has decided the check does not
	// matter here.
	Ignore Level = "ignore"
)

var levels = []Level{Require, LevelWarn, LevelInfo, Ignore}

// Profile names, built in.
const (
	ProfileBaseline     = "baseline"
	ProfileConfidential = "confidential"
)

// names is every check, in the order Run reports them.
var names = []string{
	CheckAES, CheckPCLMUL, CheckHypervisor, CheckVendor, CheckCVMType, CheckAttestation,
	CheckSwapActive, CheckSwapEncrypted, CheckHibernation, CheckCoreHandler, CheckKdump,
	CheckLockdown, CheckPtraceScope, CheckMitigations, CheckHardening, CheckKeyMemory,
}

// Names returns every check name, in the order Run reports them.
func Names() []string { return slices.Clone(names) }

// facts are checks that are never judged (always status info): a policy
// can only show or ignore them.
var facts = map[string]bool{CheckVendor: true}

// Policy sets a level for every check.
type Policy struct {
	// Name is the profile's name, or the file's path.
	Name   string
	levels map[string]Level
}

// Level returns the policy's level for a check (info for a name the
// policy does not know).
func (p *Policy) Level(name string) Level {
	if l, ok := p.levels[name]; ok {
		return l
	}
	return LevelInfo
}

// profiles are the built-in policies.
//
// baseline, the default, must stay quiet on an ordinary sound host: a
// warning printed by every command is soon ignored. It requires that this
// process's own hardening is in effect and warns only about what puts keys
// or plaintext in memory at concrete risk on this host and that the
// operator can fix: swap that is not encrypted, hibernation, a core dump
// handler given non-dumpable processes, a loaded crash kernel, and a CPU
// without AES or carry-less multiply (Go's software AES indexes tables by
// key-dependent bytes, so its cache timing can leak the key; in a VM the
// CPU model usually hides the instructions and can be changed). What
// describes the environment rather than a mistake in it — no confidential
// VM, lockdown, Yama, CPU vulnerabilities — is info: `holdfast posture`
// shows it.
//
// confidential also requires a confidential VM with an attestation
// device, and that no swap, hibernation image or crash dump can take
// memory out of it unencrypted; it warns about lockdown, Yama and CPU
// vulnerabilities too.
var profiles = map[string]map[string]Level{
	ProfileBaseline: {
		CheckAES:           LevelWarn,
		CheckPCLMUL:        LevelWarn,
		CheckHypervisor:    LevelInfo,
		CheckVendor:        LevelInfo,
		CheckCVMType:       LevelInfo,
		CheckAttestation:   LevelInfo,
		CheckSwapActive:    LevelInfo, // judged by swap.encrypted, which passes with no swap
		CheckSwapEncrypted: LevelWarn,
		CheckHibernation:   LevelWarn,
		CheckCoreHandler:   LevelWarn,
		CheckKdump:         LevelWarn,
		CheckLockdown:      LevelInfo,
		CheckPtraceScope:   LevelInfo,
		CheckMitigations:   LevelInfo,
		CheckHardening:     Require,
		CheckKeyMemory:     LevelInfo, // mlock is the best many hosts offer
	},
	ProfileConfidential: {
		CheckAES:           LevelWarn,
		CheckPCLMUL:        LevelWarn,
		CheckHypervisor:    LevelInfo, // judged by cvm.type: a confidential VM has a hypervisor too
		CheckVendor:        LevelInfo,
		CheckCVMType:       Require,
		CheckAttestation:   Require,
		CheckSwapActive:    LevelInfo, // judged by swap.encrypted
		CheckSwapEncrypted: Require,
		CheckHibernation:   Require,
		CheckCoreHandler:   LevelWarn,
		CheckKdump:         Require,
		CheckLockdown:      LevelWarn,
		CheckPtraceScope:   LevelWarn,
		CheckMitigations:   LevelWarn,
		CheckHardening:     Require,
		CheckKeyMemory:     LevelWarn,
	},
}

// Profiles returns the names of the built-in profiles.
func Profiles() []string { return slices.Sorted(maps.Keys(profiles)) }

// Profile returns a built-in profile.
func Profile(name string) (*Policy, bool) {
	l, ok := profiles[name]
	if !ok {
		return nil, false
	}
	return &Policy{Name: name, levels: maps.Clone(l)}, true
}

// ErrPolicyFile is wrapped by every error about the contents of a policy
// file.
var ErrPolicyFile = errors.New("bad policy file")

// lineError is a mistake on one line of a policy file.
type lineError struct {
	file string
	line int
	msg  string
}

func (e *lineError) Error() string {
	return fmt.Sprintf("policy file %s, line %d: %s", e.file, e.line, e.msg)
}
func (e *lineError) Unwrap() error { return ErrPolicyFile }

// Parse reads a policy file (docs/in-process.md, "Policy"): one directive
// a line, `CHECK LEVEL` or `profile NAME` (a colon after the first word is
// allowed), with # comments and blank lines. The optional profile line
// comes first and is the base the other lines change; without one the
// base is baseline. name is the file's name, for errors and Policy.Name.
func Parse(name string, r io.Reader) (*Policy, error) {
	p, _ := Profile(ProfileBaseline)
	p.Name = name
	set := map[string]int{} // check → line
	profileLine := 0
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		bad := func(f string, a ...any) error { return &lineError{name, n, fmt.Sprintf(f, a...)} }
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, bad("want `CHECK LEVEL` or `profile NAME`, got %q", strings.TrimSpace(line))
		}
		key, val := strings.TrimSuffix(f[0], ":"), f[1]
		if key == "profile" {
			switch {
			case profileLine != 0:
				return nil, bad("a second profile line (the first is line %d)", profileLine)
			case len(set) > 0:
				return nil, bad("the profile line must come before any check")
			}
			l, ok := profiles[val]
			if !ok {
				return nil, bad("unknown profile %q (want %s)", val, strings.Join(Profiles(), " or "))
			}
			p.levels, profileLine = maps.Clone(l), n
			continue
		}
		if !slices.Contains(names, key) {
			return nil, bad("unknown check %q (checks: %s)", key, strings.Join(names, ", "))
		}
		if first, ok := set[key]; ok {
			return nil, bad("%s is already set on line %d", key, first)
		}
		l := Level(val)
		if !slices.Contains(levels, l) {
			return nil, bad("%s: unknown level %q (want require, warn, info or ignore)", key, val)
		}
		if facts[key] && (l == Require || l == LevelWarn) {
			return nil, bad("%s is a fact, never judged: it can only be info or ignore", key)
		}
		p.levels[key], set[key] = l, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading policy file %s: %w", name, err)
	}
	return p, nil
}

// Load returns the built-in profile called arg, or else the policy file
// at path arg. A file named like a profile is written with a directory,
// as ./baseline. A file that someone other than this user or root could
// change is refused (see trusted): it could lower what is required.
func Load(arg string) (*Policy, error) {
	if p, ok := Profile(arg); ok {
		return p, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no policy profile or file %q (profiles: %s): %w", arg, strings.Join(Profiles(), ", "), ErrPolicyFile)
		}
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	if err := trustedFile(arg, f); err != nil {
		return nil, err
	}
	return Parse(arg, f)
}

// ErrUntrusted is wrapped by the error for a policy file that someone
// other than this user or root could change.
var ErrUntrusted = errors.New("policy file others can change")

// untrustedError says who could change a policy file, and the fix.
type untrustedError struct {
	file, why, fix string
}

func (e *untrustedError) Error() string {
	return fmt.Sprintf("policy file %s %s, who could lower what it requires; %s", e.file, e.why, e.fix)
}
func (e *untrustedError) Unwrap() error { return ErrUntrusted }

// fileMeta is what trusted judges of a file: its owner and permissions.
type fileMeta struct {
	uid  int
	mode fs.FileMode
}

// trustedFile checks the policy file f, opened from path name: the file
// read (f.Stat, so a symbolic link is judged by its target, and a path
// changed after the open does not matter) and, when name is a symbolic
// link, the link itself (os.Lstat), whose owner could point it elsewhere.
// Where files have no Unix owner (Windows) nothing is checked.
func trustedFile(name string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("policy file: %w", err)
	}
	file, ok := meta(fi)
	if !ok {
		return nil
	}
	var link *fileMeta
	li, err := os.Lstat(name)
	if err != nil {
		return fmt.Errorf("policy file: %w", err)
	}
	if li.Mode()&fs.ModeSymlink != 0 {
		l, _ := meta(li)
		link = &l
	}
	return trusted(name, file, link, os.Geteuid())
}

// trusted judges a policy file named name: the file read (file), the
// symbolic link it was reached through (link, nil for none) and the
// effective uid of this process (me). The file must be owned by me or
// root and not writable by group or others; a link must be owned by me
// or root (its own permissions mean nothing).
func trusted(name string, file fileMeta, link *fileMeta, me int) error {
	mine := func(uid int) bool { return uid == me || uid == 0 }
	if link != nil && !mine(link.uid) {
		return &untrustedError{name, fmt.Sprintf("is a symbolic link owned by uid %d, neither yours (uid %d) nor root's", link.uid, me),
			"replace it with a link or a copy of your own"}
	}
	what := "is"
	if link != nil {
		what = "is a symbolic link to a file"
	}
	if !mine(file.uid) {
		return &untrustedError{name, fmt.Sprintf("%s owned by uid %d, neither yours (uid %d) nor root's", what, file.uid, me),
			fmt.Sprintf("use a copy of your own, or have root own it (chown root %s)", name)}
	}
	if file.mode.Perm()&0o022 != 0 {
		return &untrustedError{name, fmt.Sprintf("%s writable by group or others (mode %04o)", what, file.mode.Perm()),
			fmt.Sprintf("chmod go-w %s", name)}
	}
	return nil
}

// Format writes the policy as a policy file that Parse reads back to the
// same levels: every check, one a line, in report order.
func (p *Policy) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# policy %s\n", p.Name)
	for _, n := range names {
		fmt.Fprintf(&b, "%-19s %s\n", n, p.Level(n))
	}
	return b.String()
}

// Judged is a check with the level a policy gives it.
type Judged struct {
	Check
	Level Level `json:"level"`
}

// Met reports whether the check passed (status pass).
func (j Judged) Met() bool { return j.Status == Pass }

// worrying reports whether a warn-level check should be reported: it
// warns, fails or could not be read. Info is a fact (a bare-metal host is
// no confidential VM, but has no hypervisor to fear either).
func (j Judged) worrying() bool { return j.Status == Warn || j.Status == Fail || j.Status == Unknown }

// Verdict is a report judged by a policy.
type Verdict struct {
	Policy string
	Checks []Judged
	// Unmet are the required checks that did not pass, in report order;
	// keys may be unsealed only when there are none.
	Unmet []Judged
	// Warned are the warn-level checks that warn, fail or could not be
	// read.
	Warned []Judged
}

// Evaluate judges a report. A required check missing from the report is
// unmet.
func (p *Policy) Evaluate(r Report) Verdict {
	v := Verdict{Policy: p.Name}
	for _, c := range r.Checks {
		j := Judged{c, p.Level(c.Name)}
		v.Checks = append(v.Checks, j)
		switch {
		case j.Level == Require && !j.Met():
			v.Unmet = append(v.Unmet, j)
		case j.Level == LevelWarn && j.worrying():
			v.Warned = append(v.Warned, j)
		}
	}
	for _, n := range names {
		if _, ok := r.Get(n); !ok && p.Level(n) == Require {
			v.Unmet = append(v.Unmet, Judged{Check{n, Unknown, "", "not reported"}, Require})
		}
	}
	return v
}

// Pass reports whether every requirement is met.
func (v Verdict) Pass() bool { return len(v.Unmet) == 0 }

// Err returns an *UnmetError when a requirement is not met, or nil.
func (v Verdict) Err() error {
	if v.Pass() {
		return nil
	}
	return &UnmetError{Policy: v.Policy, Unmet: v.Unmet}
}

// ErrUnmet is wrapped by UnmetError.
var ErrUnmet = errors.New("posture policy not met")

// UnmetError says which required checks failed and how to fix the first.
type UnmetError struct {
	Policy string
	Unmet  []Judged
}

func (e *UnmetError) Error() string {
	c := e.Unmet[0]
	s := fmt.Sprintf("policy %q requires %s: %s; %s, or choose a policy that allows it", e.Policy, c.Name, Problem(c.Check), Fix(c.Name))
	return s + e.more()
}

// more names the unmet checks after the first.
func (e *UnmetError) more() string {
	if len(e.Unmet) < 2 {
		return ""
	}
	var n []string
	for _, c := range e.Unmet[1:] {
		n = append(n, c.Name)
	}
	return fmt.Sprintf(" (also unmet: %s)", strings.Join(n, ", "))
}

func (e *UnmetError) Unwrap() error { return ErrUnmet }

// Names returns the names of the unmet checks.
func (e *UnmetError) Names() []string {
	var n []string
	for _, c := range e.Unmet {
		n = append(n, c.Name)
	}
	return n
}

// Problem says in a few words what is wrong with a check that did not
// pass, with its value.
func Problem(c Check) string {
	if c.Status == Unknown {
		if c.Detail == "" {
			return "it could not be read"
		}
		return "it could not be read: " + c.Detail
	}
	v := c.Value
	switch c.Name {
	case CheckAES:
		return "the CPU has no AES instructions"
	case CheckPCLMUL:
		return "the CPU has no carry-less multiply"
	case CheckHypervisor:
		return "this host runs under a hypervisor"
	case CheckCVMType:
		return fmt.Sprintf("this host is not a confidential VM (%s)", v)
	case CheckAttestation:
		return fmt.Sprintf("no attestation report can be requested (%s)", v)
	case CheckSwapActive:
		return "swap is active"
	case CheckSwapEncrypted:
		return "swap is not encrypted"
	case CheckHibernation:
		return fmt.Sprintf("hibernation is %s", v)
	case CheckCoreHandler:
		return fmt.Sprintf("core dumps go to a handler that is given non-dumpable processes (%s, fs.suid_dumpable 2)", v)
	case CheckKdump:
		return "a crash kernel is loaded"
	case CheckLockdown:
		return fmt.Sprintf("kernel lockdown is %s, not confidentiality", v)
	case CheckPtraceScope:
		if v == "absent" {
			return "Yama is absent"
		}
		return fmt.Sprintf("Yama ptrace_scope is %s", v)
	case CheckMitigations:
		return fmt.Sprintf("the CPU is vulnerable (%s)", v)
	case CheckHardening:
		return fmt.Sprintf("process hardening is %s (%s)", v, c.Detail)
	case CheckKeyMemory:
		return fmt.Sprintf("keys are held in %s memory, not memfd_secret (%s)", v, c.Detail)
	}
	return c.Detail
}

// fixes says what the operator can do about each check.
var fixes = map[string]string{
	CheckAES:           "run on a CPU with AES instructions (AES-NI, ARMv8 Crypto Extensions)",
	CheckPCLMUL:        "run on a CPU with carry-less multiply (PCLMULQDQ, ARMv8 PMULL)",
	CheckHypervisor:    "run on bare metal",
	CheckCVMType:       "run on an AMD SEV-SNP or Intel TDX guest",
	CheckAttestation:   "run on an AMD SEV-SNP or Intel TDX guest with its guest driver loaded and /dev/sev-guest or /dev/tdx_guest open to holdfast",
	CheckSwapActive:    "turn swap off (swapoff -a, and remove it from /etc/fstab)",
	CheckSwapEncrypted: "turn swap off, or put it on dm-crypt (a random-key crypttab entry) or zram",
	CheckHibernation:   "disable hibernation (no resume device: remove resume= from the kernel command line)",
	CheckCoreHandler:   "set fs.suid_dumpable to 0, or a core_pattern without a pipe handler",
	CheckKdump:         "unload the crash kernel (disable the kdump service)",
	CheckLockdown:      "boot with lockdown=confidentiality",
	CheckPtraceScope:   "set kernel.yama.ptrace_scope to 1 or more",
	CheckMitigations:   "update the kernel and CPU microcode, and do not boot with mitigations=off",
	CheckHardening:     "run on Linux where setrlimit and prctl are allowed (not blocked by seccomp), without a tracer",
	CheckKeyMemory:     "use a kernel with memfd_secret enabled (Linux 6.5 or later, or secretmem.enable=1 on older ones) and allow the memory lock it needs (RLIMIT_MEMLOCK)",
}

// Fix says what the operator can do about a check that did not pass.
func Fix(name string) string {
	if f, ok := fixes[name]; ok {
		return f
	}
	return "see docs/in-process.md"
}
