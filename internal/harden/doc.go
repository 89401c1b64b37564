// Package harden applies the process-level protections every command that
// touches keys needs before it reads a passphrase or unwraps a key: no core
// dumps (RLIMIT_CORE 0, PR_SET_DUMPABLE 0), no new privileges
// (PR_SET_NO_NEW_PRIVS), and a check that no debugger is attached.
//
// Apply only reports; the caller decides what to refuse. Refusing keyed
// work while traced is the caller's job (Report.Refusal says why).
//
// This package must never exit, print or handle key material, and must
// offer no switch that turns a measure off: there is no test hook.
// docs/in-process.md says what these measures protect against and what they
// cannot.
package harden
