//go:build linux

// Package ptracetest runs a command under a minimal ptrace tracer, for
// tests that check what a program does when it is traced. It is a test
// helper: nothing outside tests imports it.
package ptracetest

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Run starts cmd traced by the calling thread (PTRACE_TRACEME before the
// exec) and resumes every stop, passing signals on, until the process
// exits. It returns the exit status; cmd.Wait has been called.
func Run(cmd *exec.Cmd) (unix.WaitStatus, error) {
	// Every ptrace request must come from the tracing thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	execStop := true
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			cmd.Process.Kill()
			return 0, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		switch {
		case ws.Exited(), ws.Signaled():
			cmd.Wait() // the process is reaped; this only finishes cmd's copying
			return ws, nil
		case ws.Stopped():
			sig := ws.StopSignal()
			if sig == unix.SIGTRAP && execStop {
				sig, execStop = 0, false // the stop after exec, not a signal
			}
			if err := unix.PtraceCont(pid, int(sig)); err != nil {
				cmd.Process.Kill()
				return 0, fmt.Errorf("ptrace cont %d: %w", pid, err)
			}
		}
	}
}
