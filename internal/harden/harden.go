package harden

import (
	"errors"
	"fmt"
	"strings"
)

// Measure names, stable: they appear in `holdfast posture --json`.
const (
	MeasureCoreLimit  = "rlimit_core"  // RLIMIT_CORE soft and hard limits 0
	MeasureDumpable   = "dumpable"     // PR_SET_DUMPABLE 0
	MeasureNoNewPrivs = "no_new_privs" // PR_SET_NO_NEW_PRIVS 1
)

// ErrTraced means the process is being traced (a debugger, strace or any
// other ptrace tracer is attached), so keyed work is refused.
var ErrTraced = errors.New("this process is being traced")

// Measure is one protection and whether it took effect, as read back from
// the kernel after setting it.
type Measure struct {
	Name     string `json:"name"`
	InEffect bool   `json:"in_effect"`
	Error    string `json:"error,omitempty"` // why it did not take effect
}

// Report says which measures took effect and whether a tracer is attached.
type Report struct {
	Measures []Measure `json:"measures"`
	// TracerPID is the id of the tracing thread (TracerPid in
	// /proc/self/status), 0 when none is attached.
	TracerPID int `json:"tracer_pid"`
	// TracerError is set when the tracer could not be determined.
	TracerError string `json:"tracer_error,omitempty"`
}

// InEffect reports whether every measure took effect.
func (r Report) InEffect() bool {
	if len(r.Measures) == 0 {
		return false
	}
	for _, m := range r.Measures {
		if !m.InEffect {
			return false
		}
	}
	return true
}

// Traced reports whether a tracer was attached when Apply ran.
func (r Report) Traced() bool { return r.TracerPID != 0 }

// Missing lists the measures that did not take effect, with their reasons,
// for a warning line.
func (r Report) Missing() string {
	var s []string
	for _, m := range r.Measures {
		if !m.InEffect {
			s = append(s, fmt.Sprintf("%s (%s)", m.Name, m.Error))
		}
	}
	return strings.Join(s, ", ")
}

// Refusal returns an error wrapping ErrTraced when keyed work must not go
// ahead in this process, or nil.
func (r Report) Refusal() error {
	if r.Traced() {
		return fmt.Errorf("refusing to handle keys: %w (tracer thread %d); a tracer can read the keys from memory", ErrTraced, r.TracerPID)
	}
	return nil
}
