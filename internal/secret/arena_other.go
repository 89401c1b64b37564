//go:build !linux

package secret

import "os"

// mapPage returns a page of the Go heap: outside Linux there is no
// memfd_secret, and locking and dump exclusion are not wired up.
func (a *arena) mapPage() ([]byte, backing, error) {
	if len(a.why) == 0 {
		a.why = append(a.why, "memfd_secret and MADV_DONTDUMP are Linux only")
	}
	return make([]byte, os.Getpagesize()), backingHeap, nil
}
