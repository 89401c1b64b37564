//go:build holdfast_unprotected

package secret

// A binary built with -tags holdfast_unprotected keeps keys on the Go
// heap: no memfd_secret, no locked or undumpable pages. It exists only so
// that bench/keymem.sh can measure what protected key memory costs,
// against the same code with the protection off, in the same run. Never
// ship it: `holdfast posture` reports its key memory as "heap".
func init() { global = newArena(backingHeap) }
