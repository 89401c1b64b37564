package secret

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// mapPage maps one page for key slots, the strongest way the kernel and
// the process's limits allow, and records in a.why why a stronger one was
// given up. A failure is remembered and not retried for later pages. a.mu
// is held.
func (a *arena) mapPage() ([]byte, backing, error) {
	size := unix.Getpagesize()
	if a.first == backingHeap {
		return make([]byte, size), backingHeap, nil
	}
	if a.first <= backingSecretmem && !a.noMemfd {
		mem, err := secretmemPage(size)
		if err == nil {
			return mem, backingSecretmem, nil
		}
		a.noMemfd = true
		a.why = append(a.why, "memfd_secret: "+err.Error())
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, backingNone, fmt.Errorf("mmap: %w", err)
	}
	// Not in core dumps (Linux 3.4) and zero in a forked child (4.14). A
	// kernel without them gets pages that lack the property; the key is
	// still off the Go heap.
	if err := unix.Madvise(mem, unix.MADV_DONTDUMP); err != nil {
		a.why = append(a.why, "MADV_DONTDUMP: "+err.Error())
	}
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	if a.first <= backingLocked && !a.noLock {
		err := unix.Mlock(mem)
		if err == nil {
			return mem, backingLocked, nil
		}
		a.noLock = true
		a.why = append(a.why, "mlock: "+err.Error()+memlockLimit())
	}
	return mem, backingUnlocked, nil
}

// secretmemPage maps size bytes of a new memfd_secret file. The file
// descriptor is closed once mapped; the mapping keeps the memory.
func secretmemPage(size int) ([]byte, error) {
	fd, _, errno := unix.Syscall(unix.SYS_MEMFD_SECRET, unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		if errno == unix.ENOSYS {
			return nil, errors.New("not available: the kernel lacks CONFIG_SECRETMEM or has secretmem disabled (before Linux 6.5 it needs secretmem.enable=1 on the kernel command line)")
		}
		return nil, errno
	}
	defer unix.Close(int(fd))
	if err := unix.Ftruncate(int(fd), int64(size)); err != nil {
		return nil, fmt.Errorf("ftruncate: %w", err)
	}
	mem, err := unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return nil, fmt.Errorf("mmap: %w%s", err, memlockLimit())
		}
		return nil, fmt.Errorf("mmap: %w", err)
	}
	// The mapping is shared: keep it out of a forked child altogether.
	_ = unix.Madvise(mem, unix.MADV_DONTFORK)
	return mem, nil
}

// memlockLimit describes RLIMIT_MEMLOCK for an error message.
func memlockLimit() string {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l); err != nil {
		return ""
	}
	if l.Cur == unix.RLIM_INFINITY {
		return " (RLIMIT_MEMLOCK unlimited)"
	}
	return fmt.Sprintf(" (RLIMIT_MEMLOCK %d bytes)", l.Cur)
}
