package storetest_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// bugEnv makes TestMemConformance run against a deliberately broken store;
// TestSuiteCatchesBugs sets it in a child process.
const bugEnv = "HOLDFAST_STORETEST_MEM_BUG"

func TestMemConformance(t *testing.T) {
	bug := os.Getenv(bugEnv)
	storetest.Run(t, func(t *testing.T) store.Store { return newMem(bug) })
}

func TestWrappersConform(t *testing.T) {
	t.Run("Counting", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewCounting(newMem("")) })
	})
	t.Run("Faulty", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewFaulty(newMem(""), nil) })
	})
}

// TestSuiteCatchesBugs runs the suite against broken stores in a child
// process and checks that the subtest guarding each contract fails. The
// correct store passing (TestMemConformance) is the positive control.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv(bugEnv) != "" {
		t.Fatalf("%s is set in the parent test process", bugEnv)
	}
	for bug, subtest := range map[string]string{
		"accepts-invalid-names": "InvalidNames",
		"ignores-context":       "CancelledBeforePut",
		"keeps-partial-object":  "ReaderFails",
		"accepts-short-write":   "ShortWrite",
		"does-not-cut-range":    "ReadRange",
		"deletes-missing":       "Delete",
		"ignores-prefix":        "ListPrefix",
		"lists-unsorted":        "List",
		"ignores-fn-error":      "ListStopsOnError",
	} {
		t.Run(bug, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMemConformance$", "-test.count=1")
			cmd.Env = append(os.Environ(), bugEnv+"="+bug)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("suite against a store that %s: %v (want a failing exit)\n%s", bug, err, out)
			}
			if want := "--- FAIL: TestMemConformance/" + subtest + " "; !strings.Contains(string(out), want) {
				t.Fatalf("suite against a store that %s: output lacks %q:\n%s", bug, want, out)
			}
		})
	}
}
