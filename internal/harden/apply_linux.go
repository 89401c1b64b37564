package harden

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Apply sets the measures and reads each back from the kernel, then looks
// for a tracer. It is safe to call more than once. Dumpable is cleared
// before the tracer check: from then on only a process with CAP_SYS_PTRACE
// can attach, so an unprivileged tracer cannot slip in after the check.
func Apply() Report {
	var r Report
	r.Measures = append(r.Measures, coreLimit(), dumpable(), noNewPrivs())
	r.TracerPID, r.TracerError = tracer("/proc/self/status")
	return r
}

func coreLimit() Measure {
	m := Measure{Name: MeasureCoreLimit}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		m.Error = fmt.Sprintf("setrlimit: %v", err)
		return m
	}
	var got unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &got); err != nil {
		m.Error = fmt.Sprintf("getrlimit: %v", err)
		return m
	}
	if got.Cur != 0 || got.Max != 0 {
		m.Error = fmt.Sprintf("limit reads back as %d/%d", got.Cur, got.Max)
		return m
	}
	m.InEffect = true
	return m
}

func dumpable() Measure {
	m := Measure{Name: MeasureDumpable}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		m.Error = fmt.Sprintf("prctl(PR_SET_DUMPABLE): %v", err)
		return m
	}
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		m.Error = fmt.Sprintf("prctl(PR_GET_DUMPABLE): %v", err)
		return m
	}
	if v != 0 {
		m.Error = fmt.Sprintf("reads back as %d", v)
		return m
	}
	m.InEffect = true
	return m
}

func noNewPrivs() Measure {
	m := Measure{Name: MeasureNoNewPrivs}
	if err := setNoNewPrivs(); err != nil {
		m.Error = fmt.Sprintf("prctl(PR_SET_NO_NEW_PRIVS): %v", err)
		return m
	}
	// Read back from every thread, not only the caller's: the attribute is
	// per thread, and a goroutine may run on any of them.
	if err := everyThread("/proc/self/task", "NoNewPrivs:", "1"); err != nil {
		m.Error = err.Error()
		return m
	}
	m.InEffect = true
	return m
}

func prctlNoNewPrivs() error {
	return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
}

// everyThread checks that the status file of every thread under tasks
// (/proc/self/task) has the line "field value".
func everyThread(tasks, field, value string) error {
	ents, err := os.ReadDir(tasks)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return fmt.Errorf("%s lists no thread", tasks)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(tasks, e.Name(), "status"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread has exited
		}
		if err != nil {
			return err
		}
		got, found := "", false
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := bytes.CutPrefix(sc.Bytes(), []byte(field)); ok {
				got, found = string(bytes.TrimSpace(v)), true
				break
			}
		}
		switch {
		case !found:
			return fmt.Errorf("thread %s: no %s line", e.Name(), field)
		case got != value:
			return fmt.Errorf("thread %s: %s %s, want %s", e.Name(), field, got, value)
		}
	}
	return nil
}

// tracer reads TracerPid from a /proc/PID/status file.
func tracer(status string) (int, string) {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0, err.Error()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := bytes.CutPrefix(sc.Bytes(), []byte("TracerPid:"))
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(v)))
		if err != nil || pid < 0 {
			return 0, fmt.Sprintf("%s: bad TracerPid %q", status, bytes.TrimSpace(v))
		}
		return pid, ""
	}
	return 0, fmt.Sprintf("%s: no TracerPid line", status)
}
