package hsm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/secret"
)

// copiesOf scans every readable mapping of this process (through
// /proc/self/mem) for k's 32 bytes and returns where it found them. Its
// read buffer is mapped outside the Go heap and left out of the scan; the
// needle is only ever read in place, through k.Use. A memfd_secret
// mapping cannot be read, so k's own slot is found only with the weaker
// backings.
func copiesOf(t *testing.T, k secret.Key) []string { return partsOf(t, k, 0, secret.KeySize) }

// partsOf is copiesOf for the bytes [from, to) of the key.
func partsOf(t *testing.T, k secret.Key, from, to int) []string {
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

// halvesOf counts the copies of either 16-byte half of k found outside
// k's own slot (arena: 1 when that slot is readable, as with mlock).
func halvesOf(t *testing.T, k secret.Key, arena int) []string {
	a, b := partsOf(t, k, 0, 16), partsOf(t, k, 16, 32)
	return append(a[min(arena, len(a)):], b[min(arena, len(b)):]...)
}

// residueChild marks the child process TestUnwrapResidue runs its check in.
const residueChild = "HOLDFAST_TEST_RESIDUE_CHILD"

// TestUnwrapResidue: a key the token unwraps, wiped by its holder and
// collected, leaves none of its bytes anywhere in the process's readable
// memory. (The binding's Ctx.Decrypt callocs C_Decrypt's output and frees
// it without clearing, and the allocator overwrites only a freed chunk's
// first 16 bytes, so half of every key stayed in the C heap; decrypt.go
// has the module write into a buffer holdfast clears.) Controls: after
// the wrap of the same key the scan finds nothing, and a copy made on
// purpose is found.
//
// The check runs in a child test process with asynchronous preemption
// off. A preemption signal (SIGURG) that lands while a thread holds key
// bytes in its registers — SoftHSM's own AES code, which runs in this
// process as no real token's does, or this test's search for the key —
// has the kernel save those registers in the signal's frame, on the
// thread's signal stack in the Go heap, where the next scan finds them
// (seen here in most runs with it on, never with it off). Those are the
// token library's registers and the test's own, not a buffer holdfast
// could clear.
func TestUnwrapResidue(t *testing.T) {
	if os.Getenv(residueChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnwrapResidue$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), residueChild+"=1", "GODEBUG="+os.Getenv("GODEBUG")+",asyncpreemptoff=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestUnwrapResidue")) {
			t.Fatalf("the check in a child process (asynchronous preemption off): %v\n%s", err, out)
		}
		return
	}
	s, _, _ := testSource(t, Options{CacheTTL: -1})
	if s.tok.mod.dec == nil {
		t.Fatal("SoftHSM2's C_Decrypt was not found in its function list: unwraps go through the binding's Decrypt")
	}
	ctx := context.Background()
	k, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Wipe()
	arena := 0
	if secret.Backing() != "memfd_secret" {
		arena = 1 // k's own slot is readable
	}
	w, err := s.Wrap(ctx, 1, bucketAD(1), k)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	if c := halvesOf(t, k, arena); len(c) != 0 {
		t.Fatalf("after the wrap: key bytes at %v", c)
	}
	var ctl []byte
	k.Use(func(kb []byte) error { ctl = bytes.Clone(kb); return nil })
	if c := halvesOf(t, k, arena); len(c) < 2 {
		t.Fatalf("control: a copy on the heap found as %v, want both halves at least", c)
	}
	clear(ctl)

	got, err := s.Unwrap(ctx, w, bucketAD(1))
	if err != nil || !got.Equal(k) {
		t.Fatalf("unwrap: %v", err)
	}
	got.Wipe()
	runtime.GC()
	if c := halvesOf(t, k, arena); len(c) != 0 {
		t.Fatalf("after the unwrap, the key wiped: key bytes at %v", c)
	}
}
