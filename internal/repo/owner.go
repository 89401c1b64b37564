package repo

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ownerToken names this process: its pid and its start time in clock ticks
// since boot, so a recycled pid is not mistaken for a live writer.
func ownerToken() string {
	pid := os.Getpid()
	return fmt.Sprintf("%d:%s", pid, procStart(pid))
}

// ownerAlive reports whether the process named by tok is still running.
func ownerAlive(tok string) bool {
	p, start, ok := strings.Cut(tok, ":")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return start == procStart(pid)
	}
	s := procStart(pid)
	return s != "" && s == start
}

// procStart returns field 22 of /proc/PID/stat (start time), or "".
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may contain spaces; skip past its ')'.
	s := string(b)
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
