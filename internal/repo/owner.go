package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A pending write names its owner: this machine's boot id, the PID
// namespace, the pid and the process start time, so that a recycled pid is
// not mistaken for a live writer, and a writer on another machine (or
// boot), or in another PID namespace on this one (another container: the
// same boot id, other pids), is never judged dead from here.
var thisBoot = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}()

// thisPIDNS names this process's PID namespace ("pid:[4026531836]" gives
// "4026531836"), or "unknown".
var thisPIDNS = func() string {
	l, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "unknown"
	}
	l = strings.TrimSuffix(strings.TrimPrefix(l, "pid:["), "]")
	if _, err := strconv.ParseUint(l, 10, 64); err != nil {
		return "unknown"
	}
	return l
}()

// procHidesPIDs reports whether /proc is mounted with hidepid: another
// user's live process may then look absent.
var procHidesPIDs = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true // cannot tell: assume the worst
	}
	return hidesPIDs(string(b))
})

// hidesPIDs reports whether a mountinfo text mounts proc at /proc with a
// hidepid other than 0.
func hidesPIDs(mountinfo string) bool {
	for l := range strings.Lines(mountinfo) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || f[4] != "/proc" || g[0] != "proc" {
			continue
		}
		for o := range strings.SplitSeq(g[2], ",") {
			if v, ok := strings.CutPrefix(o, "hidepid="); ok && v != "0" && v != "off" {
				return true
			}
		}
	}
	return false
}

func ownerToken() string {
	pid := os.Getpid()
	return fmt.Sprintf("%s:%s:%d:%s", thisBoot, thisPIDNS, pid, procStart(pid))
}

// ownerAlive reports whether the writer named by tok may still be running.
// It answers false only when it knows: same boot, same PID namespace, and
// no process with that pid and start time where /proc shows every process.
// When it cannot tell (another machine or container, an unreadable /proc,
// /proc mounted with hidepid) it answers true, so the write is left alone
// (reported pending). Tokens of three fields (boot:pid:start) come from
// versions that did not name the namespace; they are judged as before.
func ownerAlive(tok string) bool {
	f := strings.Split(tok, ":")
	switch {
	case len(f) == 3:
		f = []string{f[0], thisPIDNS, f[1], f[2]}
	case len(f) != 4:
		return true
	}
	if f[0] != thisBoot || thisBoot == "unknown" || f[1] != thisPIDNS || thisPIDNS == "unknown" {
		return true
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil || pid <= 0 {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return procHidesPIDs()
	}
	if err != nil {
		return true
	}
	return statStart(string(b)) == f[3]
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
