//go:build unix

package posture

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadUntrusted: Load refuses a policy file writable by group or
// others, directly or through a symbolic link, and loads the same file
// once it is not (files here are the test user's own, so the owner check
// passes: TestTrusted covers owners).
func TestLoadUntrusted(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.policy")
	if err := os.WriteFile(file, []byte("cvm.type require\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.policy")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o666, false}, {0o620, false}, {0o602, false}, {0o664, false},
		{0o600, true}, {0o644, true}, {0o400, true},
	} {
		if err := os.Chmod(file, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{file, link} {
			p, err := Load(name)
			if tc.ok {
				if err != nil || p.Level(CheckCVMType) != Require {
					t.Errorf("%s at %04o: %v, want it loaded", name, tc.mode, err)
				}
				continue
			}
			if !errors.Is(err, ErrUntrusted) || !strings.HasPrefix(err.Error(), "policy file "+name+" is ") ||
				!strings.HasSuffix(err.Error(), "; chmod go-w "+name) {
				t.Errorf("%s at %04o: %v; want it refused, naming the file and chmod go-w", name, tc.mode, err)
			}
		}
	}
}
