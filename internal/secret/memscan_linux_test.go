package secret

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/harden"
)

// The acceptance test of issue 7 for key memory (TestKeyMemoryFromOutside)
// re-executes this test binary as an unprivileged key holder and as a
// reader of the holder's memory; these variables select the role.
const (
	roleEnv    = "HOLDFAST_SECRET_TEST_ROLE"    // "hardened" or "control" holder, or "reader"
	backingEnv = "HOLDFAST_SECRET_TEST_BACKING" // holder: "memfd_secret" or "mlock" (the forced fallback)
	pidEnv     = "HOLDFAST_SECRET_TEST_PID"     // reader: the holder
	addrEnv    = "HOLDFAST_SECRET_TEST_ADDR"    // reader: address of the holder's heap marker
	testUID    = 65534                          // nobody
	memlock    = 64 << 10                       // RLIMIT_MEMLOCK of holders that may lock
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(roleEnv); role {
	case "":
		os.Exit(m.Run())
	case "reader":
		os.Exit(reader())
	default:
		os.Exit(holder(role))
	}
}

// heapMarker is an ordinary Go heap buffer; the scanner must find it.
var heapMarker []byte

// holder reads four 32-byte patterns from standard input: a key it keeps
// (live), a key it wipes, a key it drops for the collector to wipe, and
// a marker it copies into a heap buffer. It prints
// "ready BACKING LIVE-ADDR MARKER-ADDR" and waits for standard input to
// close or a signal. The keys are read straight into their slots: no copy
// of them passes through Go memory.
func holder(role string) int {
	fail := func(f string, a ...any) int {
		fmt.Fprintf(os.Stderr, "holder: "+f+"\n", a...)
		return 2
	}
	// Only hardening may lower the core limit (the test sets it unlimited).
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_CORE, &lim)
	lim.Cur = lim.Max
	unix.Setrlimit(unix.RLIMIT_CORE, &lim)
	switch role {
	case "hardened":
		if r := harden.Apply(); !r.InEffect() {
			return fail("hardening not in effect: %s", r.Missing())
		}
	case "control":
	default:
		return fail("unknown role %q", role)
	}
	// Under Yama ptrace_scope 1 a same-uid reader that is not an ancestor
	// would be refused whatever holdfast does; allow it, so that only
	// hardening makes the difference. Without Yama this fails harmlessly.
	_ = unix.Prctl(unix.PR_SET_PTRACER, unix.PR_SET_PTRACER_ANY, 0, 0, 0)
	switch b := os.Getenv(backingEnv); b {
	case "memfd_secret":
	case "mlock":
		global = newArena(backingLocked)
	default:
		return fail("unknown backing %q", b)
	}
	live, err := NewFrom(os.Stdin)
	if err != nil {
		return fail("%v", err)
	}
	wiped, err := NewFrom(os.Stdin)
	if err != nil {
		return fail("%v", err)
	}
	wiped.Wipe()
	if err := func() error {
		_, err := NewFrom(os.Stdin)
		return err
	}(); err != nil {
		return fail("%v", err)
	}
	for i := 0; i < 1000 && global.liveSlots() > 1; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if n := global.liveSlots(); n != 1 {
		return fail("dropped key not collected: %d live slots", n)
	}
	heapMarker = make([]byte, 4096)
	if _, err := io.ReadFull(os.Stdin, heapMarker[:KeySize]); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("ready %s %#x %#x\n", Backing(), uintptr(unsafe.Pointer(&live.m.s.bytes()[0])), uintptr(unsafe.Pointer(&heapMarker[0])))
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(live)
	return 0
}

// readResult is what the same-uid reader reports.
type readResult struct {
	UID     int    `json:"uid"`
	CapEff  string `json:"cap_eff"`
	Memlock uint64 `json:"memlock"`
	Mem     string `json:"mem"`    // "read", or why /proc/PID/mem could not be read
	Marker  string `json:"marker"` // hex of what it read at the marker's address
	Ptrace  string `json:"ptrace"` // "attached", or why PTRACE_SEIZE failed
}

// reader tries to read the holder's heap marker through /proc/PID/mem and
// to attach to it with ptrace, and prints what happened as JSON. Exiting
// detaches it.
func reader() int {
	pid, _ := strconv.Atoi(os.Getenv(pidEnv))
	addr, _ := strconv.ParseUint(os.Getenv(addrEnv), 0, 64)
	var r readResult
	r.UID = os.Getuid()
	r.CapEff = statusField(os.Getpid(), "CapEff")
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	r.Memlock = lim.Cur
	if f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid)); err != nil {
		r.Mem = err.Error()
	} else {
		b := make([]byte, KeySize)
		if _, err := f.ReadAt(b, int64(addr)); err != nil {
			r.Mem = err.Error()
		} else {
			r.Mem, r.Marker = "read", hex.EncodeToString(b)
		}
		f.Close()
	}
	runtime.LockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		r.Ptrace = err.Error()
	} else {
		r.Ptrace = "attached"
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func statusField(pid int, name string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// patterns are one holder's secrets, random per run.
type patterns struct{ live, wiped, dropped, marker []byte }

func newPatterns() patterns {
	r := func() []byte {
		b := make([]byte, KeySize)
		rand.Read(b)
		return b
	}
	return patterns{r(), r(), r(), r()}
}

// heldProc is a running holder.
type heldProc struct {
	name      string
	cmd       *exec.Cmd
	dir       string // its working directory: where a core file would go
	stdin     io.WriteCloser
	stderr    *strings.Builder
	p         patterns
	backing   string
	live, mkr uint64 // addresses of the live key's slot and the heap marker
}

// unprivileged returns the command line that runs argv as testUID with
// RLIMIT_MEMLOCK set to memlockBytes and RLIMIT_CORE unlimited, through
// util-linux prlimit and setpriv.
func unprivileged(memlockBytes int, argv ...string) *exec.Cmd {
	args := []string{
		fmt.Sprintf("--memlock=%d:%d", memlockBytes, memlockBytes), "--core=unlimited:unlimited",
		"setpriv", fmt.Sprintf("--reuid=%d", testUID), fmt.Sprintf("--regid=%d", testUID), "--clear-groups", "--",
	}
	return exec.Command("prlimit", append(args, argv...)...)
}

// startHolder starts the test binary bin as a holder and waits for its
// ready line.
func startHolder(t *testing.T, bin, role, backing string, memlockBytes int) *heldProc {
	t.Helper()
	h := &heldProc{name: fmt.Sprintf("%s/%s/memlock=%d", role, backing, memlockBytes), p: newPatterns(), stderr: new(strings.Builder)}
	h.dir = t.TempDir()
	if err := os.Chown(h.dir, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	cmd := unprivileged(memlockBytes, bin)
	cmd.Dir = h.dir
	cmd.Env = append(os.Environ(), roleEnv+"="+role, backingEnv+"="+backing, "GOTRACEBACK=crash")
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	h.cmd = cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, b := range [][]byte{h.p.live, h.p.wiped, h.p.dropped, h.p.marker} {
		if _, err := h.stdin.Write(b); err != nil {
			t.Fatalf("%s: %v", h.name, err)
		}
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Wait()
		t.Fatalf("%s: no ready line (%v): %s", h.name, err, h.stderr)
	}
	if _, err := fmt.Sscanf(line, "ready %s %v %v\n", &h.backing, &h.live, &h.mkr); err != nil {
		t.Fatalf("%s: bad ready line %q: %v", h.name, line, err)
	}
	return h
}

// region is one line of /proc/PID/maps.
type region struct {
	lo, hi uint64
	perms  string
	name   string
}

func (r region) String() string { return fmt.Sprintf("%x-%x %s %s", r.lo, r.hi, r.perms, r.name) }

func maps(t *testing.T, pid int) []region {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var rs []region
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		var r region
		if _, err := fmt.Sscanf(f[0], "%x-%x", &r.lo, &r.hi); err != nil {
			t.Fatalf("maps line %q: %v", l, err)
		}
		r.perms = f[1]
		if len(f) > 5 {
			r.name = strings.Join(f[5:], " ")
		}
		rs = append(rs, r)
	}
	return rs
}

// scanResult: where each needle was found, and the readable-looking
// regions the scanner could not read.
type scanResult struct {
	hits       map[string][]uint64
	unreadable []region
	read       int64 // bytes scanned
}

// scanMemory reads every readable region of pid through /proc/PID/mem
// (as root) and looks for each needle.
func scanMemory(t *testing.T, pid int, needles map[string][]byte) scanResult {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := scanResult{hits: map[string][]uint64{}}
	const chunk = 1 << 20
	buf := make([]byte, chunk+KeySize)
	for _, r := range maps(t, pid) {
		if r.perms[0] != 'r' {
			continue
		}
		carry := 0 // bytes kept from the previous chunk, so a needle may straddle chunks
		for off := r.lo; off < r.hi; off += chunk {
			n := int(min(chunk, r.hi-off))
			got, err := f.ReadAt(buf[carry:carry+n], int64(off))
			if err != nil || got != n {
				res.unreadable = append(res.unreadable, r)
				break
			}
			res.read += int64(n)
			data := buf[:carry+n]
			base := off - uint64(carry)
			for name, nd := range needles {
				for i := 0; ; {
					j := bytes.Index(data[i:], nd)
					if j < 0 {
						break
					}
					res.hits[name] = append(res.hits[name], base+uint64(i+j))
					i += j + 1
				}
			}
			carry = min(KeySize-1, len(data))
			copy(buf, data[len(data)-carry:])
		}
	}
	return res
}

func regionOf(rs []region, addr uint64) region {
	for _, r := range rs {
		if addr >= r.lo && addr < r.hi {
			return r
		}
	}
	return region{}
}

// TestKeyMemoryFromOutside is the acceptance test of issue 7 for key
// memory. Holders and readers run as an unprivileged uid with
// RLIMIT_MEMLOCK set explicitly; hardened holders are checked against
// control holders started the same way without process hardening:
//
//   - a same-uid reader cannot read a hardened holder through /proc/PID/mem
//     or attach with ptrace (control: it reads the control's heap marker
//     and attaches);
//   - SIGABRT leaves no core file from a hardened holder (control: the
//     control leaves one in its directory, which holds its heap marker but
//     none of its keys, whose pages are excluded from dumps);
//   - a scan of all memory as root finds no key held in memfd_secret and
//     no wiped or collected key anywhere, while it finds the heap marker in
//     every holder and the live key in a holder using the mlock fallback.
func TestKeyMemoryFromOutside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs holders as uid 65534 through setpriv: run it as root (CI does)")
	}
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux) is needed: %v", tool, err)
		}
	}
	useFileCores(t)
	// The test binary, where uid 65534 can run it: a binary it cannot read
	// would also leave the control non-dumpable.
	binDir, err := os.MkdirTemp("", "holdfast-memscan-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	bin := filepath.Join(binDir, "holder")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}

	type want struct {
		role, backing string
		memlock       int
		backingIs     string
	}
	var holders []*heldProc
	for _, w := range []want{
		{"hardened", "memfd_secret", memlock, "memfd_secret"},
		{"hardened", "mlock", memlock, "mlock"},
		{"hardened", "memfd_secret", 0, "unlocked"}, // RLIMIT_MEMLOCK 0: neither memfd_secret nor mlock
		{"control", "memfd_secret", memlock, "memfd_secret"},
		{"control", "mlock", memlock, "mlock"},
	} {
		h := startHolder(t, bin, w.role, w.backing, w.memlock)
		holders = append(holders, h)
		if h.backing != w.backingIs {
			t.Fatalf("%s: keys held in %q, want %q", h.name, h.backing, w.backingIs)
		}
		pid := h.cmd.Process.Pid
		if got := statusField(pid, "Uid"); got != "65534 65534 65534 65534" {
			t.Errorf("%s: Uid %s", h.name, got)
		}
		if got := statusField(pid, "CapEff"); got != "0000000000000000" {
			t.Errorf("%s: CapEff %s, want none", h.name, got)
		}
		if got := limit(t, pid, "Max locked memory"); got != strconv.Itoa(w.memlock) {
			t.Errorf("%s: RLIMIT_MEMLOCK %s, want %d", h.name, got, w.memlock)
		}
	}

	for _, h := range holders {
		t.Run("reader/"+h.name, func(t *testing.T) { checkReader(t, bin, h) })
	}
	for _, h := range holders {
		t.Run("scan/"+h.name, func(t *testing.T) { checkScan(t, h) })
	}
	for _, h := range holders {
		t.Run("abort/"+h.name, func(t *testing.T) { checkAbort(t, h) })
	}
}

func limit(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	t.Fatalf("/proc/%d/limits has no %q", pid, name)
	return ""
}

func hardened(h *heldProc) bool { return strings.HasPrefix(h.name, "hardened/") }

func checkReader(t *testing.T, bin string, h *heldProc) {
	cmd := unprivileged(memlock, bin)
	cmd.Env = append(os.Environ(), roleEnv+"=reader", pidEnv+"="+strconv.Itoa(h.cmd.Process.Pid), addrEnv+"="+strconv.FormatUint(h.mkr, 10))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	var r readResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("reader output %q: %v", out, err)
	}
	t.Logf("reader: %+v", r)
	if r.UID != testUID || r.CapEff != "0000000000000000" || r.Memlock != memlock {
		t.Fatalf("reader ran as uid %d, CapEff %s, RLIMIT_MEMLOCK %d", r.UID, r.CapEff, r.Memlock)
	}
	if hardened(h) {
		if r.Mem == "read" || r.Marker != "" {
			t.Errorf("same-uid reader read the hardened holder's memory: %s", r.Marker)
		}
		if r.Ptrace == "attached" {
			t.Error("same-uid reader attached to the hardened holder with ptrace")
		}
		return
	}
	// Control: the same reader gets in when hardening is absent.
	if r.Mem != "read" || r.Marker != hex.EncodeToString(h.p.marker) {
		t.Errorf("control: reader could not read the heap marker: %s %q", r.Mem, r.Marker)
	}
	if r.Ptrace != "attached" {
		t.Errorf("control: reader could not attach: %s", r.Ptrace)
	}
}

func checkScan(t *testing.T, h *heldProc) {
	pid := h.cmd.Process.Pid
	rs := maps(t, pid)
	res := scanMemory(t, pid, map[string][]byte{"live": h.p.live, "wiped": h.p.wiped, "dropped": h.p.dropped, "marker": h.p.marker})
	t.Logf("scanned %d bytes of %d regions; live key's slot %#x in %v; found live at %x, marker at %x", res.read, len(rs), h.live, regionOf(rs, h.live), res.hits["live"], res.hits["marker"])
	for _, r := range res.unreadable {
		// The kernel refuses access to secretmem (that is the point) and to
		// the vDSO data pages; anything else unread is a blind spot.
		if !strings.Contains(r.name, "secretmem") && !strings.HasPrefix(r.name, "[vvar") {
			t.Errorf("scanner could not read %v", r)
		}
	}
	// Positive control in every holder: the scanner finds a marker planted
	// in an ordinary heap buffer, at the address the holder printed.
	if m := res.hits["marker"]; len(m) == 0 || !containsAddr(m, h.mkr) {
		t.Errorf("heap marker not found at %#x (hits %x)", h.mkr, m)
	}
	for _, gone := range []string{"wiped", "dropped"} {
		if a := res.hits[gone]; len(a) > 0 {
			t.Errorf("%s key found in memory at %x", gone, a)
		}
	}
	live := res.hits["live"]
	switch h.backing {
	case "memfd_secret":
		r := regionOf(rs, h.live)
		if !strings.Contains(r.name, "secretmem") {
			t.Errorf("live key's slot is in %v, not a secretmem mapping", r)
		}
		if !slices.Contains(res.unreadable, r) {
			t.Errorf("root read the secretmem mapping %v", r)
		}
		if len(live) > 0 {
			t.Errorf("live key held in memfd_secret found at %x", live)
		}
	default:
		// Control for the scanner's reach: outside memfd_secret the live
		// key is found, and only in its slot (no copy elsewhere).
		if len(live) != 1 || live[0] != h.live {
			t.Errorf("live key in %s pages found at %x, want exactly its slot %#x", h.backing, live, h.live)
		}
	}
}

func containsAddr(as []uint64, a uint64) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func checkAbort(t *testing.T, h *heldProc) {
	if err := h.cmd.Process.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
	ws := h.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
		t.Fatalf("holder did not die of SIGABRT: %v\n%s", h.cmd.ProcessState, h.stderr)
	}
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	var cores []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "core") {
			cores = append(cores, filepath.Join(h.dir, e.Name()))
		}
	}
	if hardened(h) {
		if ws.CoreDump() || len(cores) > 0 {
			t.Errorf("hardened holder dumped core (status %v, files %v)", ws.CoreDump(), cores)
		}
		return
	}
	// Control: same limits and pattern, no hardening: a core file appears.
	if !ws.CoreDump() || len(cores) != 1 {
		t.Fatalf("control holder: core dumped %v, files %v; the control must dump for the check to mean anything", ws.CoreDump(), cores)
	}
	core, err := os.ReadFile(cores[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control core file: %d bytes", len(core))
	if !bytes.Contains(core, h.p.marker) {
		t.Error("control core file lacks the heap marker")
	}
	for name, b := range map[string][]byte{"live": h.p.live, "wiped": h.p.wiped, "dropped": h.p.dropped} {
		if bytes.Contains(core, b) {
			t.Errorf("control core file holds the %s key", name)
		}
	}
}

// useFileCores makes sure a core dump is a file named core... in the
// crashing process's working directory, so the test can look for it. A
// pipe or absolute core_pattern is replaced by "core" for the test and
// restored after (that changes a system-wide setting for the duration).
func useFileCores(t *testing.T) {
	const p = "/proc/sys/kernel/core_pattern"
	old, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	pat := strings.TrimSpace(string(old))
	if strings.HasPrefix(pat, "core") && !strings.Contains(pat, "/") {
		return
	}
	t.Logf("core_pattern %q sends dumps elsewhere: set to \"core\" for this test", pat)
	if err := os.WriteFile(p, []byte("core"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(p, old, 0o644); err != nil {
			t.Errorf("restoring core_pattern %q: %v", pat, err)
		}
	})
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
