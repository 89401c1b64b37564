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
	dead := thisBoot + ":" + strconv.Itoa(cmd.Process.Pid) + ":1"
	if ownerAlive(dead) {
		t.Fatal("an exited process judged alive")
	}
	// Another boot or an unreadable token: cannot tell, so alive.
	other := strings.Replace(ownerToken(), thisBoot, "another-boot", 1)
	for _, tok := range []string{other, "garbage", ""} {
		if !ownerAlive(tok) {
			t.Fatalf("%q judged dead", tok)
		}
	}
}
