package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// A pending write names its owner: this machine's boot id, the pid and the
// process start time, so that a recycled pid is not mistaken for a live
// writer and a writer on another machine (or boot) is never judged dead
// from here.
var thisBoot = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}()

func ownerToken() string {
	pid := os.Getpid()
	return fmt.Sprintf("%s:%d:%s", thisBoot, pid, procStart(pid))
}

// ownerAlive reports whether the writer named by tok may still be running.
// It answers false only when it knows: same boot, and no process with that
// pid and start time. When it cannot tell (another machine, an unreadable
// /proc) it answers true, so the write is left alone (reported pending).
func ownerAlive(tok string) bool {
	f := strings.Split(tok, ":")
	if len(f) != 3 || f[0] != thisBoot || thisBoot == "unknown" {
		return true
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	return statStart(string(b)) == f[2]
}

// procStart returns field 22 of /proc/PID/stat (start time), or "".
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	return statStart(string(b))
}

func statStart(s string) string {
	// The command name (field 2) may contain spaces; skip past its ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
