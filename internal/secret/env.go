package secret

import (
	"os"
	"sync"
)

// Secrets given in the environment (a passphrase, a PIN) are inherited by
// every process started from this one — an AWS credential_process, say,
// which runs whatever command a shared AWS config names. CaptureEnv takes
// them out: it reads the named variables once, keeps their values here and
// removes them from the process environment, so that no child sees them;
// LookupEnv answers from the kept values afterwards (a gateway reads its
// passphrase again each time it unseals).
//
// The environment block the kernel placed on the process's stack at exec
// still holds the original text: /proc/PID/environ shows it, to root and
// to the same user while the process is dumpable (holdfast makes itself
// non-dumpable before it handles keys: internal/harden).

var env struct {
	mu   sync.Mutex
	kept map[string]string
}

// CaptureEnv keeps and unsets each named variable that is set. Call it
// once, at the start of main, before anything can start a process.
func CaptureEnv(names ...string) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.kept == nil {
		env.kept = map[string]string{}
	}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			env.kept[n] = v
			os.Unsetenv(n)
		}
	}
}

// LookupEnv is os.LookupEnv for the variables CaptureEnv took out of the
// environment: their kept values, else the environment's.
func LookupEnv(name string) (string, bool) {
	env.mu.Lock()
	v, ok := env.kept[name]
	env.mu.Unlock()
	if ok {
		return v, true
	}
	return os.LookupEnv(name)
}
