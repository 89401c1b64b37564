package posture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/secret"
)

// Status is a check's verdict.
type Status string

const (
	Pass    Status = "pass"    // good for keys in memory
	Warn    Status = "warn"    // a weakness worth knowing about
	Fail    Status = "fail"    // clearly bad: keyed work should not run here
	Unknown Status = "unknown" // could not be determined
	Info    Status = "info"    // a fact, not judged
)

// Check names, stable: scripts and (later) policy files refer to them.
const (
	CheckAES           = "cpu.aes"
	CheckPCLMUL        = "cpu.pclmul"
	CheckHypervisor    = "hypervisor.present"
	CheckVendor        = "hypervisor.vendor"
	CheckCVMType       = "cvm.type"
	CheckAttestation   = "cvm.attestation"
	CheckSwapActive    = "swap.active"
	CheckSwapEncrypted = "swap.encrypted"
	CheckHibernation   = "hibernation"
	CheckCoreHandler   = "coredump.handler"
	CheckKdump         = "kdump"
	CheckLockdown      = "kernel.lockdown"
	CheckPtraceScope   = "ptrace.scope"
	CheckMitigations   = "cpu.mitigations"
	CheckHardening     = "process.hardening"
)

// Check is one check's result. Value is machine-readable and documented
// per check in docs/in-process.md; Detail is for people.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Value  string `json:"value"`
	Detail string `json:"detail"`
}

// Options says where to look.
type Options struct {
	// Root is prepended to every path read (/proc, /sys, /dev); "" is "/".
	Root string
	// Hardening is this process's harden.Report; nil reports the check as
	// unknown.
	Hardening *harden.Report
}

// Report is every check, in a fixed order.
type Report struct {
	Checks []Check `json:"checks"`
}

// Failed returns the names of the checks that failed.
func (r Report) Failed() []string {
	var f []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			f = append(f, c.Name)
		}
	}
	return f
}

// Get returns the check named name.
func (r Report) Get(name string) (Check, bool) {
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.Name == name })
	if i < 0 {
		return Check{}, false
	}
	return r.Checks[i], true
}

// host reads files under a root.
type host struct{ root string }

func (h host) path(p string) string { return filepath.Join(h.root, p) }

func (h host) read(p string) (string, error) {
	b, err := os.ReadFile(h.path(p))
	return strings.TrimSpace(string(b)), err
}

func (h host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

// Run reads every check.
func Run(opts Options) Report {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	h := host{root}
	cpu := h.cpuFlags()
	var r Report
	add := func(cs ...Check) { r.Checks = append(r.Checks, cs...) }
	add(cpu.feature(CheckAES, "aes", "aes", "AES instructions (AES-NI)"),
		cpu.feature(CheckPCLMUL, "pclmulqdq", "pmull", "carry-less multiply (PCLMULQDQ), used by AES-GCM"))
	hyp := h.hypervisor(cpu)
	add(hyp, h.vendor(hyp))
	cvm := h.cvmType(cpu, hyp)
	add(cvm, h.attestation(cvm))
	swaps, swapCheck := h.swapActive()
	add(swapCheck, h.swapEncrypted(swaps, swapCheck), h.hibernation(), h.coreHandler(), h.kdump(), h.lockdown(),
		h.ptraceScope(), h.mitigations(), hardening(opts.Hardening),
		KeyMemory(secret.Backing(), secret.BackingDetail()))
	return r
}

// cpuInfo is the feature flags of the first processor in /proc/cpuinfo.
type cpuInfo struct {
	flags map[string]bool
	err   error
	arm   bool // "Features" (arm64) rather than "flags" (x86)
}

func (h host) cpuFlags() cpuInfo {
	b, err := os.ReadFile(h.path("/proc/cpuinfo"))
	if err != nil {
		return cpuInfo{err: err}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k != "flags" && k != "Features" {
			continue
		}
		ci := cpuInfo{flags: map[string]bool{}, arm: k == "Features"}
		for _, f := range strings.Fields(v) {
			ci.flags[f] = true
		}
		return ci
	}
	return cpuInfo{err: errors.New("/proc/cpuinfo has no flags line")}
}

func (ci cpuInfo) feature(name, x86, arm, what string) Check {
	if ci.err != nil {
		return Check{name, Unknown, "", fmt.Sprintf("cannot read CPU flags: %v", ci.err)}
	}
	flag := x86
	if ci.arm {
		flag = arm
	}
	if ci.flags[flag] {
		return Check{name, Pass, "present", fmt.Sprintf("%s: flag %q present", what, flag)}
	}
	return Check{name, Warn, "absent", fmt.Sprintf("%s: flag %q absent; the software fallback is slower and may leak timing", what, flag)}
}

func (h host) hypervisor(ci cpuInfo) Check {
	xen := h.exists("/sys/hypervisor/type")
	switch {
	case ci.err == nil && ci.flags["hypervisor"]:
		return Check{CheckHypervisor, Warn, "yes", "running under a hypervisor (cpuinfo flag \"hypervisor\"): it can read this guest's memory unless it is a confidential VM"}
	case xen:
		return Check{CheckHypervisor, Warn, "yes", "running under a hypervisor (/sys/hypervisor/type): it can read this guest's memory unless it is a confidential VM"}
	case ci.err != nil:
		return Check{CheckHypervisor, Unknown, "", fmt.Sprintf("cannot read CPU flags: %v", ci.err)}
	case ci.arm:
		return Check{CheckHypervisor, Unknown, "", "arm64 CPUs expose no hypervisor flag"}
	}
	return Check{CheckHypervisor, Pass, "no", "no hypervisor flag in /proc/cpuinfo: bare metal"}
}

func (h host) vendor(hyp Check) Check {
	if hyp.Value == "no" {
		return Check{CheckVendor, Info, "", "no hypervisor"}
	}
	var parts, srcs []string
	if t, err := h.read("/sys/hypervisor/type"); err == nil && t != "" {
		parts, srcs = append(parts, t), append(srcs, "/sys/hypervisor/type")
	}
	for _, f := range []string{"sys_vendor", "product_name"} {
		p := "/sys/class/dmi/id/" + f
		if v, err := h.read(p); err == nil && v != "" && !slices.Contains(parts, v) {
			parts, srcs = append(parts, v), append(srcs, p)
		}
	}
	if len(parts) == 0 {
		return Check{CheckVendor, Info, "", "vendor not exposed (no /sys/hypervisor/type, no DMI)"}
	}
	v := strings.Join(parts, " ")
	return Check{CheckVendor, Info, v, fmt.Sprintf("%s (from %s)", v, strings.Join(srcs, ", "))}
}

// Confidential VM types (cvm.type values).
const (
	CVMNone   = "none"
	CVMSEVSNP = "sev-snp"
	CVMTDX    = "tdx"
)

// guestDevice is the attestation device of each confidential VM type.
var guestDevice = map[string]string{CVMSEVSNP: "/dev/sev-guest", CVMTDX: "/dev/tdx_guest"}

func (h host) cvmType(ci cpuInfo, hyp Check) Check {
	for _, t := range []struct{ typ, flag string }{{CVMSEVSNP, "sev_snp"}, {CVMTDX, "tdx_guest"}} {
		var srcs []string
		if ci.flags[t.flag] {
			srcs = append(srcs, "cpuinfo flag "+t.flag)
		}
		if h.exists(guestDevice[t.typ]) {
			srcs = append(srcs, guestDevice[t.typ])
		}
		if len(srcs) > 0 {
			return Check{CheckCVMType, Pass, t.typ, fmt.Sprintf("confidential VM (%s): guest memory is encrypted against the host", strings.Join(srcs, ", "))}
		}
	}
	switch hyp.Value {
	case "yes":
		return Check{CheckCVMType, Warn, CVMNone, "not a confidential VM: the hypervisor and its operator can read keys and plaintext in this guest's memory"}
	case "no":
		return Check{CheckCVMType, Info, CVMNone, "bare metal: no hypervisor to protect memory from"}
	}
	return Check{CheckCVMType, Unknown, CVMNone, "no SEV-SNP or TDX guest found, and whether a hypervisor is present is unknown"}
}

func (h host) attestation(cvm Check) Check {
	dev, ok := guestDevice[cvm.Value]
	if !ok {
		return Check{CheckAttestation, Info, "n/a", "not a confidential VM"}
	}
	f, err := os.OpenFile(h.path(dev), os.O_RDWR, 0)
	if err != nil {
		return Check{CheckAttestation, Warn, "unavailable", fmt.Sprintf("cannot open %s: %v (load the guest driver, or run with access to the device)", dev, err)}
	}
	f.Close()
	return Check{CheckAttestation, Pass, "available", dev + " opens: an attestation report can be requested"}
}

// swap is one line of /proc/swaps.
type swap struct{ name, typ string }

func (h host) swapActive() ([]swap, Check) {
	b, err := os.ReadFile(h.path("/proc/swaps"))
	if err != nil {
		return nil, Check{CheckSwapActive, Unknown, "", fmt.Sprintf("cannot read /proc/swaps: %v", err)}
	}
	var swaps []swap
	var names []string
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) < 2 {
			continue // the header
		}
		s := swap{unescape(f[0]), f[1]}
		swaps, names = append(swaps, s), append(names, s.name)
	}
	if len(swaps) == 0 {
		return nil, Check{CheckSwapActive, Pass, "no", "no swap active"}
	}
	return swaps, Check{CheckSwapActive, Warn, "yes", fmt.Sprintf("swap active (%s): memory that is not locked, plaintext buffers included, can be written to it", strings.Join(names, ", "))}
}

// unescape undoes the octal escapes (\040 for a space) of /proc/swaps.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (h host) swapEncrypted(swaps []swap, active Check) Check {
	if active.Status == Unknown {
		return Check{CheckSwapEncrypted, Unknown, "", "swap areas unknown"}
	}
	if len(swaps) == 0 {
		return Check{CheckSwapEncrypted, Pass, "n/a", "no swap active"}
	}
	var plain, unknown, enc []string
	for _, s := range swaps {
		switch h.swapKind(s) {
		case "crypt", "zram":
			enc = append(enc, s.name)
		case "plain":
			plain = append(plain, s.name)
		default:
			unknown = append(unknown, s.name)
		}
	}
	switch {
	case len(plain) > 0:
		return Check{CheckSwapEncrypted, Warn, "no", fmt.Sprintf("swap not encrypted: %s", strings.Join(plain, ", "))}
	case len(unknown) > 0:
		return Check{CheckSwapEncrypted, Unknown, "", fmt.Sprintf("cannot tell whether swap is encrypted: %s (a swap file, or a device not found in /sys/class/block)", strings.Join(unknown, ", "))}
	}
	return Check{CheckSwapEncrypted, Pass, "yes", fmt.Sprintf("every swap device is dm-crypt or zram (in RAM): %s", strings.Join(enc, ", "))}
}

// swapKind says whether a swap area is on dm-crypt ("crypt", also under
// LVM or other device-mapper layers), in compressed RAM ("zram"), on a
// plain block device ("plain") or cannot be told (""). It reads sysfs only:
// a dm device's uuid starts with "CRYPT-" when cryptsetup made it.
func (h host) swapKind(s swap) string {
	if s.typ != "partition" {
		return "" // a file: its file system's device is not worth guessing
	}
	base := filepath.Base(s.name)
	if strings.HasPrefix(base, "zram") {
		return "zram"
	}
	dev := ""
	switch {
	case strings.HasPrefix(base, "dm-"):
		dev = base
	case strings.HasPrefix(s.name, "/dev/mapper/"):
		dev = h.dmByName(base)
	default:
		if h.exists("/sys/class/block/" + base) {
			return "plain"
		}
		return ""
	}
	if dev == "" {
		return ""
	}
	return h.dmKind(dev, 0)
}

func (h host) dmByName(name string) string {
	ents, _ := os.ReadDir(h.path("/sys/class/block"))
	for _, e := range ents {
		if n, err := h.read("/sys/class/block/" + e.Name() + "/dm/name"); err == nil && n == name {
			return e.Name()
		}
	}
	return ""
}

// dmKind is "crypt" when dev or a device below it is dm-crypt, "plain"
// when none is, "" when it cannot tell.
func (h host) dmKind(dev string, depth int) string {
	if depth > 8 {
		return ""
	}
	uuid, err := h.read("/sys/class/block/" + dev + "/dm/uuid")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && h.exists("/sys/class/block/"+dev) {
			return "plain" // not a dm device
		}
		return ""
	}
	if strings.HasPrefix(uuid, "CRYPT-") {
		return "crypt"
	}
	slaves, err := os.ReadDir(h.path("/sys/class/block/" + dev + "/slaves"))
	if err != nil || len(slaves) == 0 {
		return ""
	}
	kind := "crypt"
	for _, s := range slaves {
		switch h.dmKind(s.Name(), depth+1) {
		case "crypt":
		case "plain":
			if kind == "crypt" {
				kind = "plain"
			}
		default:
			kind = ""
		}
	}
	return kind
}

func (h host) hibernation() Check {
	st, err := h.read("/sys/power/state")
	if err != nil {
		return Check{CheckHibernation, Unknown, "", fmt.Sprintf("cannot read /sys/power/state: %v", err)}
	}
	if !slices.Contains(strings.Fields(st), "disk") {
		return Check{CheckHibernation, Pass, "unsupported", "the kernel offers no suspend to disk"}
	}
	res, err := h.read("/sys/power/resume")
	if err != nil {
		// A resume device that cannot be read may well be set: a
		// probe that fails passes nothing.
		return Check{CheckHibernation, Unknown, "", fmt.Sprintf("suspend to disk offered, and /sys/power/resume cannot be read: %v", err)}
	}
	if res == "" || res == "0:0" {
		return Check{CheckHibernation, Pass, "no-resume-device", "suspend to disk offered but no resume device is set"}
	}
	return Check{CheckHibernation, Warn, "enabled", fmt.Sprintf("hibernation can write all of RAM, keys included, to resume device %s", res)}
}

func (h host) coreHandler() Check {
	pat, err := h.read("/proc/sys/kernel/core_pattern")
	if err != nil {
		return Check{CheckCoreHandler, Unknown, "", fmt.Sprintf("cannot read core_pattern: %v", err)}
	}
	suid, _ := h.read("/proc/sys/fs/suid_dumpable")
	if strings.HasPrefix(pat, "|") && suid == "2" {
		return Check{CheckCoreHandler, Warn, pat, "core dumps go to a handler and fs.suid_dumpable is 2: the handler is given dumps even of non-dumpable processes, and ignores RLIMIT_CORE 0"}
	}
	where := "files named " + strconv.Quote(pat)
	if strings.HasPrefix(pat, "|") {
		where = "the handler " + strconv.Quote(strings.TrimPrefix(pat, "|"))
	}
	return Check{CheckCoreHandler, Pass, pat, fmt.Sprintf("core dumps of other processes go to %s; holdfast disables its own (process.hardening)", where)}
}

func (h host) kdump() Check {
	v, err := h.read("/sys/kernel/kexec_crash_loaded")
	switch {
	case err == nil && v == "1":
		return Check{CheckKdump, Warn, "loaded", "a crash kernel is loaded: a kernel crash writes all of RAM, keys included, to the dump target"}
	case err == nil:
		return Check{CheckKdump, Pass, "not-loaded", "no crash kernel loaded"}
	case errors.Is(err, fs.ErrNotExist) && h.exists("/sys/kernel"):
		return Check{CheckKdump, Pass, "unsupported", "the kernel has no crash-dump support"}
	}
	return Check{CheckKdump, Unknown, "", fmt.Sprintf("cannot read /sys/kernel/kexec_crash_loaded: %v", err)}
}

func (h host) lockdown() Check {
	v, err := h.read("/sys/kernel/security/lockdown")
	if err != nil {
		return Check{CheckLockdown, Unknown, "", fmt.Sprintf("cannot read the lockdown mode: %v (securityfs not mounted, or no lockdown LSM)", err)}
	}
	mode := ""
	if i, j := strings.Index(v, "["), strings.Index(v, "]"); i >= 0 && j > i {
		mode = v[i+1 : j]
	}
	switch mode {
	case "confidentiality":
		return Check{CheckLockdown, Pass, mode, "lockdown=confidentiality: even root cannot read kernel memory through /dev/mem, kcore or BPF"}
	case "integrity", "none":
		return Check{CheckLockdown, Warn, mode, fmt.Sprintf("lockdown=%s: root can read any process's memory through kernel interfaces", mode)}
	}
	return Check{CheckLockdown, Unknown, "", fmt.Sprintf("unrecognised lockdown file %q", v)}
}

func (h host) ptraceScope() Check {
	v, err := h.read("/proc/sys/kernel/yama/ptrace_scope")
	switch {
	case err == nil && (v == "1" || v == "2" || v == "3"):
		return Check{CheckPtraceScope, Pass, v, fmt.Sprintf("Yama ptrace_scope %s: unrelated processes of the same user cannot attach", v)}
	case err == nil && v == "0":
		return Check{CheckPtraceScope, Warn, v, "Yama ptrace_scope 0: any process of the same user may attach to others (holdfast's PR_SET_DUMPABLE 0 still keeps them off it)"}
	case err == nil:
		return Check{CheckPtraceScope, Unknown, v, fmt.Sprintf("unrecognised ptrace_scope %q", v)}
	case errors.Is(err, fs.ErrNotExist) && h.exists("/proc/sys/kernel"):
		return Check{CheckPtraceScope, Warn, "absent", "no Yama: classic ptrace rules, any process of the same user may attach to others (holdfast's PR_SET_DUMPABLE 0 still keeps them off it)"}
	}
	return Check{CheckPtraceScope, Unknown, "", fmt.Sprintf("cannot read ptrace_scope: %v", err)}
}

func (h host) mitigations() Check {
	dir := "/sys/devices/system/cpu/vulnerabilities"
	ents, err := os.ReadDir(h.path(dir))
	if err != nil {
		return Check{CheckMitigations, Unknown, "", fmt.Sprintf("cannot read %s: %v", dir, err)}
	}
	var vuln []string
	for _, e := range ents {
		v, err := h.read(dir + "/" + e.Name())
		if err == nil && strings.HasPrefix(v, "Vulnerable") {
			vuln = append(vuln, e.Name())
		}
	}
	if len(vuln) == 0 {
		return Check{CheckMitigations, Pass, "", fmt.Sprintf("no entry of %s says Vulnerable", dir)}
	}
	return Check{CheckMitigations, Warn, strings.Join(vuln, ","), fmt.Sprintf("vulnerable (see %s): %s", dir, strings.Join(vuln, ", "))}
}

func hardening(r *harden.Report) Check {
	switch {
	case r == nil:
		return Check{CheckHardening, Unknown, "", "process hardening was not applied"}
	case r.Traced():
		return Check{CheckHardening, Fail, "traced", fmt.Sprintf("this process is traced by pid %d: commands that touch keys refuse to run", r.TracerPID)}
	case !r.InEffect():
		return Check{CheckHardening, Fail, "incomplete", "not in effect: " + r.Missing()}
	case r.TracerError != "":
		return Check{CheckHardening, Warn, "tracer-unknown", "measures in effect, but whether a tracer is attached is unknown: " + r.TracerError}
	}
	return Check{CheckHardening, Pass, "in-effect", "no core dumps (RLIMIT_CORE 0, not dumpable), no new privileges, not traced"}
}
