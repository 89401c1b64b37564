package secret

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// mapping returns the name and the VmFlags of the mapping in
// /proc/self/smaps that holds addr.
func mapping(t *testing.T, addr uintptr) (name string, flags []string) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // "lo-hi perms offset dev inode [name]"
			var lo, hi uintptr
			if _, err := fmt.Sscanf(fields[0], "%x-%x", &lo, &hi); err == nil {
				in = addr >= lo && addr < hi
				name = ""
				if len(fields) > 5 {
					name = strings.Join(fields[5:], " ")
				}
			}
			continue
		}
		if in && fields[0] == "VmFlags:" {
			return name, fields[1:]
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return "", nil
}

// TestKeyMemoryMapping reads from the kernel's side what holds the key
// bytes in each backing: locked ("lo"), not dumped ("dd"), zeroed in a
// forked child ("wf"), and for memfd_secret the secretmem file. The heap
// row is the control: the same reader shows none of these on a Go heap
// page.
func TestKeyMemoryMapping(t *testing.T) {
	for _, c := range []struct {
		want        string
		name        string
		has, hasNot []string
	}{
		{"memfd_secret", "secretmem", []string{"lo", "dd", "dc"}, nil},
		{"mlock", "", []string{"lo", "dd", "wf"}, nil},
		{"unlocked", "", []string{"dd", "wf"}, []string{"lo"}},
		{"heap", "", nil, []string{"lo", "dd", "wf"}},
	} {
		t.Run(c.want, func(t *testing.T) {
			first := backingSecretmem
			for _, b := range backings {
				if b.want == c.want {
					first = b.first
				}
			}
			withArena(t, first)
			requireBacking(t, c.want)
			k, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer k.Wipe()
			name, flags := mapping(t, uintptr(unsafe.Pointer(&view(t, k)[0])))
			t.Logf("mapping %q, VmFlags %v", name, flags)
			if !strings.Contains(name, c.name) {
				t.Errorf("key in mapping %q, want one named %q", name, c.name)
			}
			for _, f := range c.has {
				if !slices.Contains(flags, f) {
					t.Errorf("key mapping lacks %q: VmFlags %v", f, flags)
				}
			}
			for _, f := range c.hasNot {
				if slices.Contains(flags, f) {
					t.Errorf("key mapping has %q: VmFlags %v", f, flags)
				}
			}
		})
	}
}
