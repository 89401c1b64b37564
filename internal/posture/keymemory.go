package posture

// CheckKeyMemory names the check of where this process holds key bytes
// (package secret's Backing); Run reports it last.
const CheckKeyMemory = "process.keymemory"

// KeyMemory judges how this process holds keys: backing is
// secret.Backing() ("memfd_secret", "mlock", "unlocked", "heap", "none"),
// detail is secret.BackingDetail().
func KeyMemory(backing, detail string) Check {
	c := Check{Name: CheckKeyMemory, Status: Warn, Value: backing, Detail: detail}
	switch backing {
	case "memfd_secret":
		c.Status = Pass
	case "mlock":
		c.Detail += "; root can read them through /proc/PID/mem, and the kernel through its direct map"
	case "unlocked":
		c.Detail += "; raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK=) to lock them"
	case "none":
		c.Detail = "no memory for keys could be mapped: " + detail
	}
	return c
}
