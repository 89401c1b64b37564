// Package memscan finds copies of a key's bytes in the readable memory of
// the test process, for tests that hold code to leaving no key material
// behind (Linux: /proc/self/maps and /proc/self/mem).
package memscan

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/secret"
)

// Copies scans every readable mapping of this process (through
// /proc/self/mem) for k's 32 bytes and returns where it found them. Its
// read buffer is mapped outside the Go heap and left out of the scan; the
// needle is only ever read in place, through k.Use. A memfd_secret
// mapping cannot be read, so k's own slot is found only with the weaker
// backings.
func Copies(t *testing.T, k secret.Key) []string { return Parts(t, k, 0, secret.KeySize) }

// Parts is Copies for the bytes [from, to) of the key.
func Parts(t *testing.T, k secret.Key, from, to int) []string {
	t.Helper()
	const chunk = 1 << 20
	buf, err := unix.Mmap(-1, 0, chunk+secret.KeySize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	self := uintptr(unsafe.Pointer(&buf[0]))
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[1][0] != 'r' {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		name := "[anonymous]"
		if len(f) > 5 {
			name = f[5]
		}
		if uintptr(start) <= self && self < uintptr(end) || name == "[vvar]" || name == "[vsyscall]" || name == "[vvar_vclock]" {
			continue
		}
		for off := start; off < end; off += chunk {
			// Read a key's length past the chunk, so that a copy across
			// the boundary is found; count only copies starting in it.
			n := min(end-off, chunk+secret.KeySize)
			got, err := mem.ReadAt(buf[:n], int64(off))
			if got == 0 && err != nil {
				break // not readable (memfd_secret, guard pages)
			}
			_ = k.Use(func(kb []byte) error {
				kb = kb[from:to]
				for i := 0; ; {
					j := bytes.Index(buf[i:got], kb)
					if j < 0 || i+j >= chunk {
						break
					}
					found = append(found, fmt.Sprintf("%#x %s", off+uint64(i+j), name))
					i += j + 1
				}
				return nil
			})
			clear(buf[:got])
		}
	}
	return found
}

// Halves counts the copies of either 16-byte half of k found outside
// k's own slot (arena: 1 when that slot is readable, as with mlock).
func Halves(t *testing.T, k secret.Key, arena int) []string {
	a, b := Parts(t, k, 0, 16), Parts(t, k, 16, 32)
	return append(a[min(arena, len(a)):], b[min(arena, len(b)):]...)
}

// childEnv marks a test process InChild started.
const childEnv = "HOLDFAST_TEST_MEMSCAN_CHILD"

// InChild runs the calling test again in a child test process with
// asynchronous preemption off and reports whether this is that child.
// In the parent it returns false after the child, failing the test
// unless the child passed. A preemption signal (SIGURG) that lands
// while a thread holds key bytes in its registers — the code under
// test, or a test's own search for the key — has the kernel save those
// registers in the signal's frame, on the thread's signal stack in the
// Go heap, where the next scan finds them: registers, not a buffer the
// code could clear. Scans therefore run with preemption off.
func InChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name(), "GODEBUG="+os.Getenv("GODEBUG")+",asyncpreemptoff=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the check in a child process (asynchronous preemption off): %v\n%s", err, out)
	}
	return false
}
