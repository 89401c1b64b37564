package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
)

// wipeChildEnv makes the re-executed test binary a child of
// TestWipeKeysOnSignals: "observe" (die prints what it sees and exits 0),
// "real" (die is dieOf), either with ",nohup" (SIGHUP ignored from the
// start).
const wipeChildEnv = "HOLDFAST_WIPE_TEST_CHILD"

// wipeChild holds a key, installs wipeKeysOnSignals and reports each
// SIGINT and SIGTERM it sees, the way Main's context would.
func wipeChild(mode string) {
	if strings.Contains(mode, "nohup") {
		signal.Ignore(syscall.SIGHUP)
	}
	k, err := secret.New()
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	seen := make(chan os.Signal, 4)
	signal.Notify(seen, syscall.SIGINT, syscall.SIGTERM)
	die := dieOf
	if strings.HasPrefix(mode, "observe") {
		die = func(s syscall.Signal) {
			fmt.Printf("die %v valid=%v\n", s, k.Valid())
			os.Exit(0)
		}
	}
	wipeKeysOnSignals(die)
	fmt.Printf("ready valid=%v\n", k.Valid())
	for s := range seen {
		fmt.Printf("got %v\n", s)
	}
}

// TestWipeKeysOnSignals: SIGHUP, and the second SIGINT or SIGTERM, wipe
// the keys and end the process by that signal; the first SIGINT or
// SIGTERM is left to Main (controls: a later SIGHUP is what ends the
// process, and the key is valid until then); an ignored SIGHUP stays
// ignored.
func TestWipeKeysOnSignals(t *testing.T) {
	if mode := os.Getenv(wipeChildEnv); mode != "" {
		wipeChild(mode)
		return
	}
	const (
		hup  = syscall.SIGHUP
		intr = syscall.SIGINT
		term = syscall.SIGTERM
	)
	for _, c := range []struct {
		mode string
		send []syscall.Signal
		want string // observe: the die line; real: the signal that ended it
	}{
		{"observe", []syscall.Signal{hup}, "die hangup valid=false"},
		{"observe", []syscall.Signal{intr, intr}, "die interrupt valid=false"},
		{"observe", []syscall.Signal{term, term}, "die terminated valid=false"},
		{"observe", []syscall.Signal{intr, hup}, "die hangup valid=false"},
		{"observe,nohup", []syscall.Signal{hup, term, term}, "die terminated valid=false"},
		{"real", []syscall.Signal{hup}, "hangup"},
		{"real", []syscall.Signal{intr, intr}, "interrupt"},
	} {
		t.Run(fmt.Sprintf("%s/%v", c.mode, c.send), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestWipeKeysOnSignals$")
			cmd.Env = append(os.Environ(), wipeChildEnv+"="+c.mode)
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
			if l := next(); l != "ready valid=true" {
				t.Fatalf("child: %q", l)
			}
			for i, s := range c.send {
				if err := cmd.Process.Signal(s); err != nil {
					t.Fatal(err)
				}
				if s == hup || i == len(c.send)-1 {
					continue // nothing reports a SIGHUP; the last one ends the child
				}
				// Main's stand-in saw it: the signal handler has it queued
				// before any signal sent after this.
				if l := next(); l != "got "+s.String() {
					t.Fatalf("after %v: %q", s, l)
				}
			}
			var last string
			for l := next(); l != ""; l = next() {
				if !strings.HasPrefix(l, "got ") {
					last = l
				}
			}
			cmd.Wait()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if c.mode == "real" {
				if !ws.Signaled() || ws.Signal().String() != c.want {
					t.Fatalf("child ended with %v, want death by %s", cmd.ProcessState, c.want)
				}
				return
			}
			if last != c.want || !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("child said %q and ended with %v; want %q", last, cmd.ProcessState, c.want)
			}
		})
	}
}
