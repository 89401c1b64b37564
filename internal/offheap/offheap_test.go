package offheap

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags returns the VmFlags line of the mapping in /proc/self/smaps that
// contains addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header line starts "lo-hi perms ..."; its detail
		// lines start "Name:".
		if first, _, _ := strings.Cut(line, " "); !strings.HasSuffix(first, ":") {
			var lo, hi uintptr
			if _, err := fmt.Sscanf(first, "%x-%x", &lo, &hi); err == nil {
				in = addr >= lo && addr < hi
			}
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return line
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

func TestAllocIsOutsideTheHeapAndOutOfCoreDumps(t *testing.T) {
	const n = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b, err := Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(b)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	runtime.ReadMemStats(&after)
	if len(b) != n {
		t.Fatalf("len %d", len(b))
	}
	if grew := int64(after.HeapSys) - int64(before.HeapSys); grew >= n/2 {
		t.Fatalf("Go heap grew by %d bytes for a %d-byte off-heap buffer", grew, n)
	}
	if fl := vmFlags(t, uintptr(unsafe.Pointer(&b[0]))); !strings.Contains(fl, " dd") {
		t.Fatalf("buffer not excluded from core dumps: %s", fl)
	}
	// Control: a mapping made without the advice lacks the flag, so the
	// check above can tell the difference.
	c, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(c)
	if fl := vmFlags(t, uintptr(unsafe.Pointer(&c[0]))); strings.Contains(fl, " dd") {
		t.Fatalf("plain mapping also shows dd: %s", fl)
	}
}

func TestPoolReusesUpToKeep(t *testing.T) {
	p := NewPool(1<<20, 2)
	var bs [][]byte
	for range 3 {
		b, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 1<<20 {
			t.Fatalf("len %d", len(b))
		}
		bs = append(bs, b)
	}
	if p.Outstanding() != 3 {
		t.Fatalf("outstanding %d after three Gets", p.Outstanding())
	}
	bs[0][0] = 42
	first := &bs[0][0]
	for _, b := range bs {
		p.Put(b)
	}
	if p.Idle() != 2 || p.Outstanding() != 0 {
		t.Fatalf("pool keeps %d idle buffers (want 2), %d outstanding (want 0)", p.Idle(), p.Outstanding())
	}
	// The most recently returned kept buffer comes back first; the third
	// was unmapped.
	b, _ := p.Get()
	c, _ := p.Get()
	if &c[0] != first || c[0] != 42 {
		t.Fatal("pool did not hand back a kept buffer")
	}
	if &b[0] == first {
		t.Fatal("same buffer handed out twice")
	}
	if p.Idle() != 0 {
		t.Fatalf("idle %d after taking both", p.Idle())
	}
	p.Put(b)
	p.Put(c)
}

func TestPoolRefusesForeignBuffer(t *testing.T) {
	p := NewPool(1<<20, 1)
	defer func() {
		if recover() == nil {
			t.Fatal("a buffer of another size was accepted")
		}
	}()
	p.Put(make([]byte, 10))
}

func TestAllocRefusesBadSize(t *testing.T) {
	if _, err := Alloc(0); err == nil {
		t.Fatal("size 0 accepted")
	}
	b, err := Alloc(1) // control
	if err != nil {
		t.Fatal(err)
	}
	Free(b)
}
