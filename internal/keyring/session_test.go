package keyring

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/secret"
)

// Sessions live in the kernel's user-session keyring of whoever runs the
// tests; every test keyring has its own salt, hence its own session name,
// and each test locks what it unlocked.

func unlock(t *testing.T, k *Keyring, path string) {
	t.Helper()
	if err := k.Unlock(2 * time.Minute); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	t.Cleanup(func() { _, _ = Lock(path) })
}

// sameKeys checks that b unwraps what a wraps: the same root key.
func sameKeys(t *testing.T, a, b *Keyring) {
	t.Helper()
	ctx := context.Background()
	dk, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	ad := testAD(a.Repo(), 1)
	w, err := a.Wrap(ctx, 1, ad, dk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Unwrap(ctx, w, ad)
	if err != nil {
		t.Fatalf("the session's keyring does not unwrap the file's: %v", err)
	}
	if !got.Equal(dk) {
		t.Fatal("unwrapped a different key")
	}
}

func TestSessionUnlockOpenLock(t *testing.T) {
	k, path := newKeyring(t)
	if _, err := OpenSession(path); !errors.Is(err, ErrNoSession) {
		t.Fatalf("before Unlock: %v, want ErrNoSession", err)
	}
	unlock(t, k, path)
	s, err := OpenSession(path)
	if err != nil {
		t.Fatalf("OpenSession after Unlock: %v", err)
	}
	defer s.Close()
	if s.Repo() != k.Repo() || s.Params() != k.Params() {
		t.Fatal("the session opened a different keyring")
	}
	sameKeys(t, k, s)
	// The session's keyring can rewrite the file (it holds the file key).
	if err := s.SetFreshness(Freshness{Sequence: 1, Hash: [32]byte{1}, Time: time.Now()}); err != nil {
		t.Fatalf("rewriting through the session: %v", err)
	}
	if r, err := Open(path, testPass); err != nil {
		t.Fatalf("the file rewritten through a session no longer opens: %v", err)
	} else {
		r.Close()
	}
	// The rewrite drew a new nonce, not a new salt: the session still works.
	if s2, err := OpenSession(path); err != nil {
		t.Fatalf("after a rewrite: %v", err)
	} else {
		s2.Close()
	}

	had, err := Lock(path)
	if err != nil || !had {
		t.Fatalf("Lock = %v, %v; want true", had, err)
	}
	if _, err := OpenSession(path); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after Lock: %v, want ErrNoSession", err)
	}
	if had, err := Lock(path); err != nil || had {
		t.Fatalf("second Lock = %v, %v; want false", had, err)
	}
}

func TestSessionDuration(t *testing.T) {
	k, path := newKeyring(t)
	for _, d := range []time.Duration{0, -time.Second, MaxSession + time.Second} {
		if err := k.Unlock(d); err == nil {
			_, _ = Lock(path)
			t.Errorf("Unlock(%s) accepted", d)
		}
	}
	if _, err := OpenSession(path); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a refused Unlock left a session: %v", err)
	}
	unlock(t, k, path) // control: a valid duration works
	s, err := OpenSession(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// The session names one file generation: another keyring, or the same one
// after a passphrase change (a new salt), is not opened by it.
func TestSessionBoundToFile(t *testing.T) {
	a, pa := newKeyring(t)
	_, pb := newKeyring(t)
	unlock(t, a, pa)
	if _, err := OpenSession(pb); !errors.Is(err, ErrNoSession) {
		t.Fatalf("another keyring opened with a's session: %v", err)
	}
	s, err := OpenSession(pa) // control
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := a.ChangePassphrase([]byte("new passphrase"), a.Params()); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSession(pa); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after a passphrase change the old session still opens: %v", err)
	}
}

// A key planted under the session's name that does not open the file is
// refused (no error but "no session") and destroyed.
func TestSessionForeignKey(t *testing.T) {
	k, path := newKeyring(t)
	_, h, err := readHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	name := sessionName(h)
	t.Cleanup(func() { _, _ = sessionForget(name) })
	other, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := sessionStore(name, other, 60); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSession(path); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a foreign key opened the file: %v", err)
	}
	if _, err := sessionLoad(name); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the foreign key was not destroyed: %v", err)
	}
	// Control: the same planting with the file's own key opens it.
	if err := sessionStore(name, k.kek, 60); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSession(path)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	s.Close()
}

// The kernel holds the key with possessor-only permissions and a timeout.
func TestSessionKernelAttributes(t *testing.T) {
	k, path := newKeyring(t)
	_, h, err := readHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	unlock(t, k, path)
	line := procKey(t, sessionName(h))
	if line == "" {
		t.Fatal("the session key is not in /proc/keys")
	}
	f := strings.Fields(line)
	// id flags usage timeout perm uid gid type description
	if f[4] != fmt.Sprintf("%08x", sessionPerm) {
		t.Errorf("permissions %s, want %08x (possessor only): %s", f[4], sessionPerm, line)
	}
	if f[3] == "perm" {
		t.Errorf("no timeout: %s", line)
	}
	if f[7] != "user" {
		t.Errorf("key type %s: %s", f[7], line)
	}
}

func procKey(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open("/proc/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), " "+name+":") {
			return sc.Text()
		}
	}
	return ""
}

const sessionChildEnv = "HOLDFAST_TEST_SESSION_CHILD"

// A process in another kernel session (here: one that joined a fresh
// session keyring, as a new login would have) cannot use the session;
// the same child without joining can.
func TestSessionOtherLoginSessionCannotUse(t *testing.T) {
	k, path := newKeyring(t)
	unlock(t, k, path)
	run := func(join bool) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSessionChild$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%t", sessionChildEnv, path, join))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(false)
	if err != nil || !strings.Contains(out, "child: opened") {
		t.Fatalf("control: a child in the same session: %v\n%s", err, out)
	}
	out, err = run(true)
	if err != nil || !strings.Contains(out, "child: no session") {
		t.Fatalf("a child in another session: %v\n%s", err, out)
	}
}

// TestSessionChild is the child of the test above; it does nothing in a
// normal run.
func TestSessionChild(t *testing.T) {
	v := os.Getenv(sessionChildEnv)
	if v == "" {
		return
	}
	cheap(t) // the parent's keyring has the cheap test parameters
	path, join, _ := strings.Cut(v, "|")
	// The session keyring belongs to the thread's credentials.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if join == "true" {
		if _, err := unix.KeyctlJoinSessionKeyring(fmt.Sprintf("holdfast-test-%d", os.Getpid())); err != nil {
			t.Fatalf("joining a new session keyring: %v", err)
		}
	}
	s, err := OpenSession(path)
	switch {
	case errors.Is(err, ErrNoSession):
		fmt.Println("child: no session")
	case err != nil:
		t.Fatal(err)
	default:
		s.Close()
		fmt.Println("child: opened")
	}
}
