package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
)

// hupChildEnv makes the re-executed test binary run one holdfast command
// as main does — wipingKeys around Main — with hooks that print "writing"
// at its first write and then wait for a line on standard input, and
// print "rechecked ERR" after each posture re-check made on SIGHUP.
const hupChildEnv = "HOLDFAST_HUP_TEST_CHILD"

func hupChild(args []string) {
	keyring.SetInsecureTestParamsForTesting()
	takeSecretsFromEnv() // as main does
	var once sync.Once
	in := bufio.NewReader(os.Stdin)
	hooks := &repo.Hooks{
		At: func(p string) {
			if p != "put:pending" && p != "putmany:stored" {
				return
			}
			once.Do(func() {
				fmt.Println("writing")
				in.ReadString('\n')
			})
		},
		PostureChecked: func(err error) { fmt.Printf("rechecked %v\n", err) },
	}
	os.Exit(wipingKeys(func() int { return Main(args, strings.NewReader(""), os.Stdout, os.Stderr, hooks) }))
}

// TestSIGHUPRechecksInTheRealBinary: in the process main sets up, where
// SIGHUP otherwise wipes the keys and ends the process, a command that
// re-checks posture on SIGHUP (sync, serve; the key server takes it the
// same way, to reload) re-checks and carries on. Control: the same SIGHUP at
// the same point of a put, which does not re-check, wipes the keys and
// ends the process by SIGHUP, as documented.
func TestSIGHUPRechecksInTheRealBinary(t *testing.T) {
	if a := os.Getenv(hupChildEnv); a != "" {
		hupChild(strings.Split(a, "\x1f"))
		return
	}
	c := newCLI(t)
	c.must("init")
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte(strings.Repeat("x", 100+i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args     []string
		rechecks bool // the command takes SIGHUP as a posture re-check
	}{
		{[]string{"sync", dir, "bkt/tree"}, true},
		{[]string{"serve", "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--insecure-http"}, true},
		{[]string{"put", filepath.Join(dir, "f0"), "bkt/one"}, false},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			if tc.args[0] == "serve" {
				hupServe(t, tc.args)
				return
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSIGHUPRechecksInTheRealBinary$")
			cmd.Env = append(os.Environ(), hupChildEnv+"="+strings.Join(tc.args, "\x1f"))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			lines := bufio.NewScanner(out)
			next := func() string {
				if !lines.Scan() {
					return ""
				}
				return lines.Text()
			}
			if l := next(); l != "writing" {
				t.Fatalf("child: %q; stderr:\n%s", l, stderr.String())
			}
			// The command holds its keys and is writing: SIGHUP now.
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			l := next()
			if tc.rechecks {
				if l != "rechecked <nil>" {
					cmd.Wait()
					t.Fatalf("after SIGHUP: child said %q and ended with %v; stderr:\n%s", l, cmd.ProcessState, stderr.String())
				}
				fmt.Fprintln(stdin, "go on")
				for l := next(); l != ""; l = next() {
				}
				if err := cmd.Wait(); err != nil {
					t.Fatalf("%s after the re-check: %v; stderr:\n%s", tc.args[0], err, stderr.String())
				}
				if n := strings.Count(c.must("ls", "bkt/tree/"), "\n"); n != 5 {
					t.Fatalf("%d files synced, want 5", n)
				}
				return
			}
			// Control: nothing re-checks; SIGHUP ends the process.
			cmd.Wait()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if l != "" || !ws.Signaled() || ws.Signal() != syscall.SIGHUP {
				t.Fatalf("control: child said %q and ended with %v, want death by SIGHUP; stderr:\n%s", l, cmd.ProcessState, stderr.String())
			}
		})
	}
}

// hupServe runs serve as main does, sends it SIGHUP once it serves, and
// wants the re-check in its log; then SIGTERM ends it with exit 0.
func hupServe(t *testing.T, args []string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGHUPRechecksInTheRealBinary$")
	cmd.Env = append(os.Environ(), hupChildEnv+"="+strings.Join(args, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "  stop with") {
	}
	go func() {
		for lines.Scan() {
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	logs := bufio.NewScanner(errPipe)
	rechecked := false
	for !rechecked && logs.Scan() {
		log.WriteString(logs.Text() + "\n")
		rechecked = strings.Contains(logs.Text(), "posture re-checked on SIGHUP: the policy is met")
	}
	if !rechecked {
		cmd.Wait()
		t.Fatalf("serve after SIGHUP: ended with %v; log:\n%s", cmd.ProcessState, log.String())
	}
	go func() {
		for logs.Scan() {
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve on SIGTERM after the re-check: %v", err)
	}
}
