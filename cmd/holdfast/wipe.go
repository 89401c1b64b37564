package main

// Keys are wiped before the process ends (docs/in-process.md, "Key
// memory"): when main returns, and when a signal ends the process.

import (
	"os"
	"os/signal"
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
// When a command re-checks posture on SIGHUP (posture.Guard), SIGHUP must
// come off this list for that command.
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

// dieOf ends the process by sig as if holdfast had not caught it: the Go
// runtime, handling it again, dies by it, and a shell sees 128+sig (130
// for SIGINT). It does not return.
func dieOf(sig syscall.Signal) {
	signal.Reset(sig)
	syscall.Kill(os.Getpid(), sig)
	select {}
}
