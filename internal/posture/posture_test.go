package posture

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/secret"
)

// tree writes files (path → content; a content of "/" makes a directory)
// under a new root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if c == "/" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// merge returns base with over applied; an empty content in over deletes.
func merge(base, over map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

const swapHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

// good is a host where every check passes (or is info).
var good = map[string]string{
	"/proc/cpuinfo":                                      "processor\t: 0\nflags\t\t: fpu sse aes pclmulqdq avx\n\nprocessor\t: 1\nflags\t\t: fpu\n",
	"/proc/swaps":                                        swapHeader,
	"/sys/power/state":                                   "freeze mem\n",
	"/proc/sys/kernel/core_pattern":                      "core\n",
	"/proc/sys/fs/suid_dumpable":                         "0\n",
	"/sys/kernel/kexec_crash_loaded":                     "0\n",
	"/sys/kernel/security/lockdown":                      "none integrity [confidentiality]\n",
	"/proc/sys/kernel/yama/ptrace_scope":                 "1\n",
	"/sys/devices/system/cpu/vulnerabilities/meltdown":   "Not affected\n",
	"/sys/devices/system/cpu/vulnerabilities/spectre_v2": "Mitigation: Retpolines; STIBP: disabled\n",
}

var hardened = &harden.Report{Measures: []harden.Measure{
	{Name: harden.MeasureCoreLimit, InEffect: true},
	{Name: harden.MeasureDumpable, InEffect: true},
	{Name: harden.MeasureNoNewPrivs, InEffect: true},
}}

// want is a check's expected status and value.
type want struct {
	status Status
	value  string
}

func TestChecks(t *testing.T) {
	allGood := map[string]want{
		CheckAES:           {Pass, "present"},
		CheckPCLMUL:        {Pass, "present"},
		CheckHypervisor:    {Pass, "no"},
		CheckVendor:        {Info, ""},
		CheckCVMType:       {Info, CVMNone},
		CheckAttestation:   {Info, "n/a"},
		CheckSwapActive:    {Pass, "no"},
		CheckSwapEncrypted: {Pass, "n/a"},
		CheckHibernation:   {Pass, "unsupported"},
		CheckCoreHandler:   {Pass, "core"},
		CheckKdump:         {Pass, "not-loaded"},
		CheckLockdown:      {Pass, "confidentiality"},
		CheckPtraceScope:   {Pass, "1"},
		CheckMitigations:   {Pass, ""},
		CheckHardening:     {Pass, "in-effect"},
	}
	for _, tc := range []struct {
		name      string
		files     map[string]string
		hardening *harden.Report
		want      map[string]want // checks not listed must be as on the good host
	}{
		{name: "good host", files: good, hardening: hardened},
		{
			name: "weak host",
			files: merge(good, map[string]string{
				"/proc/cpuinfo":                                 "flags\t: fpu sse hypervisor\n",
				"/sys/class/dmi/id/sys_vendor":                  "QEMU\n",
				"/sys/class/dmi/id/product_name":                "Standard PC (Q35 + ICH9, 2009)\n",
				"/proc/swaps":                                   swapHeader + "/dev/sda2                               partition\t2097148\t\t0\t\t-2\n",
				"/sys/class/block/sda2":                         "/",
				"/sys/power/state":                              "freeze mem disk\n",
				"/sys/power/resume":                             "8:2\n",
				"/proc/sys/kernel/core_pattern":                 "|/usr/lib/systemd/systemd-coredump %P %u\n",
				"/proc/sys/fs/suid_dumpable":                    "2\n",
				"/sys/kernel/kexec_crash_loaded":                "1\n",
				"/sys/kernel/security/lockdown":                 "[none] integrity confidentiality\n",
				"/proc/sys/kernel/yama/ptrace_scope":            "0\n",
				"/sys/devices/system/cpu/vulnerabilities/mds":   "Vulnerable: Clear CPU buffers attempted, no microcode\n",
				"/sys/devices/system/cpu/vulnerabilities/srbds": "Vulnerable\n",
			}),
			hardening: &harden.Report{Measures: []harden.Measure{
				{Name: harden.MeasureCoreLimit, InEffect: true},
				{Name: harden.MeasureDumpable, Error: "prctl: operation not permitted"},
			}},
			want: map[string]want{
				CheckAES:           {Warn, "absent"},
				CheckPCLMUL:        {Warn, "absent"},
				CheckHypervisor:    {Warn, "yes"},
				CheckVendor:        {Info, "QEMU Standard PC (Q35 + ICH9, 2009)"},
				CheckCVMType:       {Warn, CVMNone},
				CheckSwapActive:    {Warn, "yes"},
				CheckSwapEncrypted: {Warn, "no"},
				CheckHibernation:   {Warn, "enabled"},
				CheckCoreHandler:   {Warn, "|/usr/lib/systemd/systemd-coredump %P %u"},
				CheckKdump:         {Warn, "loaded"},
				CheckLockdown:      {Warn, "none"},
				CheckPtraceScope:   {Warn, "0"},
				CheckMitigations:   {Warn, "mds,srbds"},
				CheckHardening:     {Fail, "incomplete"},
			},
		},
		{
			name: "SEV-SNP guest, swap on dm-crypt, traced",
			files: merge(good, map[string]string{
				"/proc/cpuinfo":                      "flags\t: fpu aes pclmulqdq hypervisor sev sev_es sev_snp\n",
				"/sys/hypervisor/type":               "xen\n",
				"/dev/sev-guest":                     "device",
				"/proc/swaps":                        swapHeader + "/dev/mapper/crypt\\040swap                partition\t2097148\t\t0\t\t-2\n",
				"/sys/class/block/dm-0/dm/name":      "crypt swap\n",
				"/sys/class/block/dm-0/dm/uuid":      "CRYPT-PLAIN-crypt swap\n",
				"/sys/class/block/dm-1/dm/name":      "other\n",
				"/proc/sys/kernel/core_pattern":      "|/usr/share/apport/apport %p\n",
				"/sys/power/state":                   "freeze mem disk\n",
				"/sys/power/resume":                  "0:0\n",
				"/sys/kernel/kexec_crash_loaded":     "",
				"/sys/kernel/security/lockdown":      "none [integrity] confidentiality\n",
				"/proc/sys/kernel/yama/ptrace_scope": "3\n",
			}),
			hardening: &harden.Report{Measures: hardened.Measures, TracerPID: 4242},
			want: map[string]want{
				CheckHypervisor:    {Warn, "yes"},
				CheckVendor:        {Info, "xen"},
				CheckCVMType:       {Pass, CVMSEVSNP},
				CheckAttestation:   {Pass, "available"},
				CheckSwapActive:    {Warn, "yes"},
				CheckSwapEncrypted: {Pass, "yes"},
				CheckHibernation:   {Pass, "no-resume-device"},
				CheckCoreHandler:   {Pass, "|/usr/share/apport/apport %p"},
				CheckKdump:         {Pass, "unsupported"},
				CheckLockdown:      {Warn, "integrity"},
				CheckPtraceScope:   {Pass, "3"},
				CheckHardening:     {Fail, "traced"},
			},
		},
		{
			name: "TDX guest without its device, swap on LVM over dm-crypt and zram",
			files: merge(good, map[string]string{
				"/proc/cpuinfo":                          "flags\t: fpu aes pclmulqdq hypervisor tdx_guest\n",
				"/proc/swaps":                            swapHeader + "/dev/dm-1 partition 1 0 -2\n/dev/zram0 partition 1 0 100\n",
				"/sys/class/block/dm-1/dm/uuid":          "LVM-abc\n",
				"/sys/class/block/dm-1/slaves/dm-0":      "/",
				"/sys/class/block/dm-0/dm/uuid":          "CRYPT-LUKS2-0123-luks\n",
				"/sys/class/block/dm-0/slaves/nvme0n1p3": "/",
				"/proc/sys/kernel/yama/ptrace_scope":     "",
				"/proc/sys/kernel/yama":                  "",
				"/proc/sys/kernel/ostype":                "Linux\n",
			}),
			hardening: nil,
			want: map[string]want{
				CheckHypervisor:    {Warn, "yes"},
				CheckCVMType:       {Pass, CVMTDX},
				CheckAttestation:   {Warn, "unavailable"},
				CheckSwapActive:    {Warn, "yes"},
				CheckSwapEncrypted: {Pass, "yes"},
				CheckPtraceScope:   {Warn, "absent"},
				CheckHardening:     {Unknown, ""},
			},
		},
		{
			name: "arm64, swap on LVM over a plain partition and a swap file",
			files: merge(good, map[string]string{
				"/proc/cpuinfo":                                      "processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n",
				"/proc/swaps":                                        swapHeader + "/dev/dm-1 partition 1 0 -2\n/swapfile file 1 0 -3\n",
				"/sys/class/block/dm-1/dm/uuid":                      "LVM-abc\n",
				"/sys/class/block/dm-1/slaves/sda3":                  "/",
				"/sys/class/block/sda3/partition":                    "3\n",
				"/sys/devices/system/cpu/vulnerabilities/spectre_v2": "Vulnerable: Unprivileged eBPF enabled\n",
			}),
			hardening: &harden.Report{Measures: hardened.Measures, TracerError: "no TracerPid line"},
			want: map[string]want{
				CheckHypervisor:    {Unknown, ""},
				CheckVendor:        {Info, ""},
				CheckCVMType:       {Unknown, CVMNone},
				CheckSwapActive:    {Warn, "yes"},
				CheckSwapEncrypted: {Warn, "no"},
				CheckMitigations:   {Warn, "spectre_v2"},
				CheckHardening:     {Warn, "tracer-unknown"},
			},
		},
		{
			name:      "swap file only",
			files:     merge(good, map[string]string{"/proc/swaps": swapHeader + "/swap\\040file file 1 0 -2\n"}),
			hardening: hardened,
			want: map[string]want{
				CheckSwapActive:    {Warn, "yes"},
				CheckSwapEncrypted: {Unknown, ""},
			},
		},
		{
			name:  "nothing readable",
			files: map[string]string{"/etc/hostname": "x\n"},
			want: map[string]want{
				CheckAES:           {Unknown, ""},
				CheckPCLMUL:        {Unknown, ""},
				CheckHypervisor:    {Unknown, ""},
				CheckVendor:        {Info, ""},
				CheckCVMType:       {Unknown, CVMNone},
				CheckSwapActive:    {Unknown, ""},
				CheckSwapEncrypted: {Unknown, ""},
				CheckHibernation:   {Unknown, ""},
				CheckCoreHandler:   {Unknown, ""},
				CheckKdump:         {Unknown, ""},
				CheckLockdown:      {Unknown, ""},
				CheckPtraceScope:   {Unknown, ""},
				CheckMitigations:   {Unknown, ""},
				CheckHardening:     {Unknown, ""},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(Options{Root: tree(t, tc.files), Hardening: tc.hardening})
			// process.keymemory is this process's own, whatever the tree.
			if len(r.Checks) != len(allGood)+1 {
				t.Errorf("%d checks, want %d", len(r.Checks), len(allGood)+1)
			}
			if c, ok := r.Get(CheckKeyMemory); !ok || c != KeyMemory(secret.Backing(), secret.BackingDetail()) {
				t.Errorf("%s: %+v, want this process's backing %q", CheckKeyMemory, c, secret.Backing())
			}
			for name, g := range allGood {
				w, ok := tc.want[name]
				if !ok {
					w = g
				}
				c, ok := r.Get(name)
				if !ok {
					t.Errorf("no check %s", name)
					continue
				}
				if c.Status != w.status || c.Value != w.value {
					t.Errorf("%s: %s %q (%s), want %s %q", name, c.Status, c.Value, c.Detail, w.status, w.value)
				}
				if c.Detail == "" {
					t.Errorf("%s: no detail", name)
				}
			}
			var wantFailed []string
			for _, c := range r.Checks {
				if c.Status == Fail {
					wantFailed = append(wantFailed, c.Name)
				}
			}
			if got := strings.Join(r.Failed(), ","); got != strings.Join(wantFailed, ",") {
				t.Errorf("Failed() = %q, want %q", got, wantFailed)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/dev/sda2`:     "/dev/sda2",
		`/swap\040file`: "/swap file",
		`/a\\b`:         `/a\\b`,
		`/end\04`:       `/end\04`,
		`/x\134y`:       `/x\y`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHibernationResumeUnreadable: with suspend to disk offered, a resume
// device that cannot be read is unknown, not a pass, and a policy that
// requires hibernation (confidential) refuses. Controls: the same host
// with resume readable as unset, 0:0 or a device.
func TestHibernationResumeUnreadable(t *testing.T) {
	base := merge(good, map[string]string{"/sys/power/state": "freeze mem disk\n"})
	conf, _ := Profile(ProfileConfidential)
	for _, tc := range []struct {
		name   string
		resume string // "/" makes it a directory, which cannot be read
		status Status
		value  string
	}{
		{"unset", "\n", Pass, "no-resume-device"},
		{"0:0", "0:0\n", Pass, "no-resume-device"},
		{"a device", "8:2\n", Warn, "enabled"},
		{"unreadable", "/", Unknown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(Options{Root: tree(t, merge(base, map[string]string{"/sys/power/resume": tc.resume}))})
			c, _ := r.Get(CheckHibernation)
			if c.Status != tc.status || c.Value != tc.value {
				t.Fatalf("hibernation: %s %q (%s), want %s %q", c.Status, c.Value, c.Detail, tc.status, tc.value)
			}
			v := conf.Evaluate(r)
			unmet := slices.ContainsFunc(v.Unmet, func(j Judged) bool { return j.Name == CheckHibernation })
			if unmet != (tc.status != Pass) {
				t.Fatalf("confidential policy: hibernation unmet %v with status %s", unmet, c.Status)
			}
		})
	}
}
