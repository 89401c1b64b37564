package atomicfile

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// killChildEnv makes the re-executed test binary a writer that is killed
// mid-write (see TestMain): "unnamed" with the default temporary file,
// "named" with the named one.
const killChildEnv = "HOLDFAST_ATOMICFILE_KILL_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(killChildEnv); mode != "" {
		if strings.HasSuffix(mode, "named") && !strings.HasSuffix(mode, "unnamed") {
			procFDs = func() bool { return false }
		}
		path := os.Getenv(killChildEnv + "_PATH")
		fill := func(w io.Writer) error {
			w.Write([]byte("partial plaintext"))
			os.Stdout.WriteString("writing\n")
			select {} // until killed
		}
		var err error
		if strings.HasPrefix(mode, "root-") {
			var root *os.Root
			if root, err = os.OpenRoot(filepath.Dir(path)); err == nil {
				err = WriteIn(root, filepath.Base(path), Options{}, fill)
			}
		} else {
			err = Write(path, Options{}, fill)
		}
		panic(err)
	}
	os.Exit(m.Run())
}

// TestKilledMidWriteLeavesNothing: a process killed (SIGKILL: no handler
// runs) while it writes — with Write, or with WriteIn through a root (sync
// down) — leaves no file behind: the content goes to an unnamed file
// (O_TMPFILE) that is named only once complete. Control: the
// same kill with a named temporary file (the fallback where O_TMPFILE or
// /proc is missing) leaves it, so the check can see a leftover.
func TestKilledMidWriteLeavesNothing(t *testing.T) {
	if !procFDs() {
		t.Fatal("no /proc/self/fd: this test needs Linux with /proc")
	}
	for _, mode := range []string{"unnamed", "named", "root-unnamed", "root-named"} {
		t.Run(mode, func(t *testing.T) {
			d := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), killChildEnv+"="+mode, killChildEnv+"_PATH="+filepath.Join(d, "out"))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "writing\n" {
				cmd.Process.Kill()
				t.Fatalf("child: %q %v", line, err)
			}
			cmd.Process.Kill()
			cmd.Wait() // reaped: its files are closed, an unnamed one freed
			es, err := os.ReadDir(d)
			if err != nil {
				t.Fatal(err)
			}
			switch named := !strings.HasSuffix(mode, "unnamed"); {
			case !named && len(es) != 0:
				t.Errorf("killed mid-write: %d entries left (%s)", len(es), es[0].Name())
			case named && len(es) != 1:
				t.Errorf("control: killed mid-write with a named temporary file: %d entries, want the one left behind", len(es))
			}
		})
	}
}

// TestCopyTemp: where /proc refuses to link an unnamed file, its content
// is copied to a named temporary file (copyTemp), whole, with its mode.
func TestCopyTemp(t *testing.T) {
	d := t.TempDir()
	f, name, err := osDir{}.createTemp(d, "out")
	if err != nil || name != "" {
		t.Fatalf("createTemp: %q %v (want an unnamed file)", name, err)
	}
	defer f.Close()
	want := bytes.Repeat([]byte("content "), 10000)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o640); err != nil {
		t.Fatal(err)
	}
	tmp, err := copyTemp(osDir{}, f, d, "out")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(tmp)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copy: %d bytes, %v", len(got), err)
	}
	if fi, _ := os.Stat(tmp); fi.Mode().Perm() != 0o640 || filepath.Dir(tmp) != d {
		t.Fatalf("copy: mode %v in %s", fi.Mode(), filepath.Dir(tmp))
	}
}
