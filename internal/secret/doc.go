// Package secret owns the in-memory representation of key material.
//
// A Key never exposes its bytes as a value: callers borrow them inside a
// scoped function (Key.Use) and must not retain the slice. This keeps every
// place that touches raw key bytes visible in the code, and lets a later
// change move the backing memory out of the Go heap (mlock, memfd_secret)
// without touching callers.
//
// This package must never print, log, marshal or compare key bytes in
// variable time.
package secret
