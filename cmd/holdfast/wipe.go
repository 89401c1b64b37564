package main

// Keys are wiped before the process ends (docs/in-process.md, "Key
// memory"): when main returns, and when a signal ends the process.

import (
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/holdfast/holdfast/internal/secret"
)

// wipingKeys runs the CLI and wipes every key before returning its exit
// code; a signal that ends the process on the way wipes them too.
func wipingKeys(run func() int) int {
	wipeKeysOnSignals(dieOf)
	defer secret.WipeAll()
	return run()
}

// wipeKeysOnSignals wipes every key (secret.WipeAll) before a signal ends
// the process, then calls die, which ends it as the signal would have.
// SIGHUP ends it at once. SIGINT and SIGTERM end it on the second one:
// Main turns the first into a cancelled command and exit 130, after which
// wipingKeys wipes the keys. A signal ignored when holdfast started
// (nohup, a background job) stays ignored.
//
// A command that re-checks posture on SIGHUP (posture.Guard: serve, sync)
// or re-reads its configuration on it (keyserver serve) takes it over
// with takeSIGHUP while it runs: SIGHUP then neither wipes the keys nor
// ends the process.
func wipeKeysOnSignals(die func(syscall.Signal)) {
	var sigs []os.Signal
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 {
		return
	}
	c := make(chan os.Signal, 4)
	signal.Notify(c, sigs...)
	go func() {
		interrupts := 0
		for s := range c {
			if s == syscall.SIGHUP && hupTaken.Load() > 0 {
				continue // a re-check, handled where it was taken
			}
			if s != syscall.SIGHUP {
				if interrupts++; interrupts == 1 {
					continue // Main's context handles the first
				}
			}
			secret.WipeAll()
			die(s.(syscall.Signal))
		}
	}()
}

// hupTaken counts the commands running that have taken SIGHUP over.
var hupTaken atomic.Int32

// takeSIGHUP makes SIGHUP a signal the caller handles (it has its own
// signal.Notify for it, made after this call): until release is called,
// SIGHUP does not wipe the keys or end the process. Without it the signal
// reaches both handlers, and the process dies of what was meant as a
// re-check.
func takeSIGHUP() (release func()) {
	hupTaken.Add(1)
	return sync.OnceFunc(func() { hupTaken.Add(-1) })
}

// dieOf ends the process by sig as if holdfast had not caught it: the Go
// runtime, handling it again, dies by it, and a shell sees 128+sig (130
// for SIGINT). It does not return.
func dieOf(sig syscall.Signal) {
	signal.Reset(sig)
	syscall.Kill(os.Getpid(), sig)
	select {}
}
