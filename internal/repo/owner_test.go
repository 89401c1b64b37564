package repo

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestOwnerAlive(t *testing.T) {
	if !ownerAlive(ownerToken()) {
		t.Fatal("this process judged dead")
	}
	// A process that has exited, on this boot: dead.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	dead := thisBoot + ":" + thisPIDNS + ":" + pid + ":1"
	if ownerAlive(dead) {
		t.Fatal("an exited process judged alive")
	}
	// The same in the token of earlier versions (no namespace).
	if ownerAlive(thisBoot + ":" + pid + ":1") {
		t.Fatal("an exited process judged alive (three-field token)")
	}
	// The same pid in another PID namespace (another container on this
	// boot: its pids are not ours to look up): cannot tell, so alive.
	if !ownerAlive(thisBoot + ":1:" + pid + ":1") {
		t.Fatal("a writer in another PID namespace judged dead")
	}
	if thisPIDNS == "unknown" {
		t.Fatal("this process's PID namespace is unknown")
	}
	// Another boot or an unreadable token: cannot tell, so alive.
	other := strings.Replace(ownerToken(), thisBoot, "another-boot", 1)
	for _, tok := range []string{other, "garbage", ""} {
		if !ownerAlive(tok) {
			t.Fatalf("%q judged dead", tok)
		}
	}
}

// TestHidesPIDs: /proc mounted with hidepid (another user's live writer
// then looks gone) is recognised, so that its writes are left alone.
func TestHidesPIDs(t *testing.T) {
	for mi, want := range map[string]bool{
		"22 27 0:21 / /proc rw,relatime - proc proc rw\n":                             false,
		"22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=0\n":                   false,
		"22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=2\n":                   true,
		"22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw,hidepid=invisible\n": true,
		"30 27 0:21 / /other rw - proc proc rw,hidepid=2\n":                           false,
	} {
		if got := hidesPIDs(mi); got != want {
			t.Errorf("%q: %v, want %v", mi, got, want)
		}
	}
}
