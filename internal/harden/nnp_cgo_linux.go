//go:build linux && cgo

package harden

// No new privileges is a property of each thread, inherited by the threads
// it creates. A program linked with cgo cannot set it on all of its
// threads later (syscall.AllThreadsSyscall refuses when cgo is in use), so
// it is set here, in a constructor that runs before the Go runtime starts
// its first thread: every thread of the process then has it. Apply reads
// it back from every thread.

/*
#include <sys/prctl.h>

__attribute__((constructor)) static void holdfast_no_new_privs(void) {
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}
*/
import "C"

// nnpAtLoad: every process of this binary has no new privileges from its
// start, before Apply.
const nnpAtLoad = true

// setNoNewPrivs has nothing left to do: the constructor did it for the
// whole process. Setting it again on this thread is harmless and keeps a
// failure of the constructor visible in the read-back.
func setNoNewPrivs() error {
	return prctlNoNewPrivs()
}
