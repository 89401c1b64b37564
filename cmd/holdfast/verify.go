package main

// verify: authenticate every stored object against the catalog, report
// damage, and end with one line for monitoring (docs/cli.md, "verify").

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/repo"
)

func (e *env) verifyCmd() *cobra.Command {
	var o repo.VerifyOptions
	var sample string
	c := &cobra.Command{
		Use:   "verify [--quick] [--jobs N] [--sample P] [--resume]",
		Short: "Authenticate every stored object against the catalog and report damage",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if o.Jobs < 0 || o.Jobs > 1024 {
				return usagef("--jobs %d: give 1 to 1024 (0 for the default)", o.Jobs)
			}
			if sample != "" {
				f, err := parseSample(sample)
				if err != nil {
					return err
				}
				o.Sample = f
			}
			return e.verify(c, o)
		},
	}
	fl := c.Flags()
	fl.BoolVar(&o.Quick, "quick", false, "check listing, lengths, headers and manifests only (no body decryption)")
	fl.IntVar(&o.Jobs, "jobs", 0, "objects checked at once (default: 16 on S3, the number of CPUs on a local store)")
	fl.StringVar(&sample, "sample", "", "read only a random sample of the data objects: a percentage (5%) or a fraction (0.05); every object is still checked against the listing")
	fl.BoolVar(&o.Resume, "resume", false, "continue the interrupted verify whose checkpoint is in the home")
	return c
}

// parseSample reads --sample: "5%" is five percent, "0.05" the same as a
// fraction. A bare number above 1 is refused rather than guessed at.
func parseSample(s string) (float64, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, usagef("--sample %q: give a percentage (5%%) or a fraction (0.05)", s)
	}
	if pct {
		f /= 100
	}
	if !(f > 0 && f <= 1) {
		return 0, usagef("--sample %q: the sample must be more than 0 and at most 100%% (a fraction at most 1)", s)
	}
	return f, nil
}

func (e *env) verify(c *cobra.Command, o repo.VerifyOptions) (err error) {
	ctx := c.Context()
	start := time.Now()
	out := newVerifyOutput(e, o)
	r, err := e.open(ctx, false)
	if err != nil {
		return out.end(repo.VerifySummary{Counts: map[repo.Status]int{}}, nil, err, time.Since(start))
	}
	defer e.closeRepo(r, &err)
	if n, err := r.Catalog().Count(ctx); err == nil {
		if bar := newCountBar(e.stderr, e.quiet || e.jsonOut, n, "verify"); bar != nil {
			o.Progress = func(objects int, _ int64) { bar.Set(objects) }
			defer bar.Finish()
		}
	}
	sum, err := r.Verify(ctx, o, out.finding)
	return out.end(sum, r, err, time.Since(start))
}

// verifyOutput prints verify's findings as they come (text lines, or the
// elements of the JSON "findings" array), so that memory does not grow
// with their number, and then the summary.
type verifyOutput struct {
	e     *env
	o     repo.VerifyOptions
	found int
}

func newVerifyOutput(e *env, o repo.VerifyOptions) *verifyOutput {
	v := &verifyOutput{e: e, o: o}
	if e.jsonOut {
		fmt.Fprint(e.stdout, "{\n  \"findings\": [")
	}
	return v
}

func (v *verifyOutput) finding(f repo.Finding) {
	v.found++
	if v.e.jsonOut {
		b, _ := json.MarshalIndent(f, "    ", "  ")
		sep := ","
		if v.found == 1 {
			sep = ""
		}
		fmt.Fprintf(v.e.stdout, "%s\n    %s", sep, b)
		return
	}
	what := f.Name
	switch {
	case f.Bucket != "":
		what = f.Bucket + "/" + f.Key
	case f.What != "":
		what = f.What + ", store object " + f.Name
	}
	desc := f.Status.Describe()
	if f.Status == repo.StatusUnknown && f.What != "" {
		// Authentic, so not injected: say what is known of where it is from.
		desc = f.Detail
	}
	fmt.Fprintf(v.e.stdout, "%-12s %s (%s)\n", f.Status, what, desc)
}

// end prints the summary and the monitoring line and returns what decides
// the exit code: 0 clean, 4 damage found, 6 could not check (some object
// or all of it), or the run's own error's code (5 key, 130 interrupted).
func (v *verifyOutput) end(sum repo.VerifySummary, r *repo.Repo, runErr error, took time.Duration) error {
	status, ret := verifyOutcome(sum, runErr)
	mode := "full"
	if v.o.Quick {
		mode = "quick"
	}
	line := summaryLine(status, mode, runErr == nil, sum, took)
	if v.e.jsonOut {
		if v.found > 0 {
			fmt.Fprint(v.e.stdout, "\n  ")
		}
		fmt.Fprint(v.e.stdout, "]")
		tail := map[string]any{"verdict": status, "summary": sum, "complete": runErr == nil,
			"duration_seconds": took.Seconds(), "summary_line": line}
		if runErr != nil {
			tail["error"] = runErr.Error()
		}
		if r != nil {
			withStore(r, tail)
		}
		keys := make([]string, 0, len(tail))
		for k := range tail {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b, err := json.MarshalIndent(tail[k], "  ", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(v.e.stdout, ",\n  %q: %s", k, b)
		}
		fmt.Fprint(v.e.stdout, "\n}\n")
		// Standard output is the JSON; the line goes to standard error.
		fmt.Fprintln(v.e.stderr, line)
		return ret
	}
	if runErr == nil {
		fmt.Fprintf(v.e.stdout, "verify (%s): %s: %d objects checked, %d ok, %d damaged, %d pending, %d leftovers cleaned%s\n",
			mode, status, sum.Checked, sum.Counts[repo.StatusOK], sum.DamagedCount(), sum.Counts[repo.StatusPending], sum.Cleaned, extras(sum))
	}
	fmt.Fprintln(v.e.stdout, line)
	return ret
}

// extras describes what a plain run does not have: unchecked objects and
// a sample.
func extras(sum repo.VerifySummary) string {
	s := ""
	if n := sum.Unchecked(); n > 0 {
		s += fmt.Sprintf(", %d could not be checked", n)
	}
	if sum.Sample > 0 {
		s += fmt.Sprintf("; sample %s: %d objects read, %d only listed", percent(sum.Sample), sum.Checked-sum.Unsampled, sum.Unsampled)
	}
	return s
}

func percent(f float64) string { return strconv.FormatFloat(f*100, 'g', 6, 64) + "%" }

// verifyOutcome is the status word of the monitoring line and the error
// that sets the exit code.
func verifyOutcome(sum repo.VerifySummary, runErr error) (string, error) {
	if sum.Damaged() {
		// Damage found is the alert, even if the run could not finish.
		if runErr != nil {
			return repo.VerdictDamaged, codeError{exitDamaged, fmt.Errorf("damage found, and then the check stopped: %w", runErr)}
		}
		return repo.VerdictDamaged, codeError{code: exitDamaged}
	}
	if runErr != nil {
		if errors.Is(runErr, repo.ErrResumeMismatch) {
			return repo.VerdictUnchecked, codeError{exitUsage, runErr}
		}
		code, _ := classify(runErr)
		switch code {
		case exitInterrupt:
			return "interrupted", runErr
		case exitError:
			return repo.VerdictUnchecked, codeError{exitUnchecked, fmt.Errorf("could not check: %w", runErr)}
		}
		return repo.VerdictUnchecked, runErr // key trouble, store unreachable, …: its own code
	}
	if sum.Unchecked() > 0 {
		return repo.VerdictUnchecked, codeError{exitUnchecked, fmt.Errorf("could not check %d objects (the store did not answer for them); run verify again", sum.Unchecked())}
	}
	return repo.VerdictClean, nil
}

// summaryLine is the one line for monitoring: fixed words, key=value
// fields in a fixed order, counts as plain integers (docs/cli.md).
func summaryLine(status, mode string, complete bool, sum repo.VerifySummary, took time.Duration) string {
	c := sum.Counts
	yn := map[bool]string{true: "yes", false: "no"}
	sample := "100%"
	if sum.Sample > 0 {
		sample = percent(sum.Sample)
	}
	return fmt.Sprintf("holdfast-verify: status=%s complete=%s mode=%s sample=%s checked=%d ok=%d damaged=%d "+
		"missing=%d altered=%d truncated=%d rolled_back=%d swapped=%d unknown=%d pending=%d unchecked=%d "+
		"unsampled=%d cleaned=%d bytes=%d duration=%.3fs",
		status, yn[complete], mode, sample, sum.Checked, c[repo.StatusOK], sum.DamagedCount(),
		c[repo.StatusMissing], c[repo.StatusAltered], c[repo.StatusTruncated], c[repo.StatusRolledBack], c[repo.StatusSwapped],
		c[repo.StatusUnknown], c[repo.StatusPending], c[repo.StatusUnchecked],
		sum.Unsampled, sum.Cleaned, sum.Bytes, took.Seconds())
}
