// Package secret owns the in-memory representation of key material.
//
// A Key never exposes its bytes as a value: callers borrow them inside a
// scoped function (Key.Use) and must not retain the slice. This keeps every
// place that touches raw key bytes visible in the code, and lets the bytes
// live outside the Go heap without callers knowing.
//
// Key bytes live in 32-byte slots of a small arena of pages that the Go
// runtime never sees: memfd_secret(2) pages where the kernel allows them,
// otherwise anonymous pages locked with mlock and excluded from core dumps
// (unlocked if RLIMIT_MEMLOCK forbids locking). Backing says which; a slot
// is zeroed when its key is wiped, when a key nobody wiped is garbage
// collected, and by WipeAll, which the command calls on exit and on fatal
// signals. docs/in-process.md says what this protects and what stays on
// the Go heap.
//
// This package must never print, log, marshal or compare key bytes in
// variable time, exit the process, or install signal handlers.
package secret
