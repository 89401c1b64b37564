//go:build linux && !cgo

package harden

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// nnpAtLoad: a process of this binary has no new privileges only once
// Apply set it.
const nnpAtLoad = false

// setNoNewPrivs sets no new privileges on every thread of the process (it
// is a property of each thread; see nnp_cgo_linux.go for programs linked
// with cgo).
func setNoNewPrivs() error {
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}
