package main

// This file owns `holdfast keys log` and the record of key use: the
// unwrap counts of a repository a command opened (closeRepo). The log
// itself is internal/keys/oplog; keys.go has the helpers every key
// command records with.

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/repo"
)

func (e *env) keysLogCmd() *cobra.Command {
	var check bool
	c := &cobra.Command{
		Use:   "log [--check]",
		Short: "Show the key-operation log, checking its hash chain; --check adds the verdict",
		Long: `log prints the home's key-operation log, HOME/keyops.log: one line per key
operation (create, ceremony, rotate, backup, restore, passwd, unwrap-counts),
oldest first; --json prints the records as stored. Each record names the
SHA-256 of the one before it, and the chain is checked as the log is read:
exit 0 when it is intact, 4 when it is broken (the records before the first
broken line are printed, then that line is named), 3 when the home has no
log. --check adds the verdict: the number of records and the head (the
hash of the last line: note it somewhere else to vouch for the last line
too). See docs/keys.md.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			home, err := e.homeDir()
			if err != nil {
				return err
			}
			path := oplog.Path(home)
			ch, err := oplog.Read(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no key-operation log %q: this home has recorded no key operation: %w", path, repo.ErrNotFound)
			}
			var broken *oplog.BrokenError
			if err != nil && !errors.As(err, &broken) {
				return err
			}
			if err := e.printLog(path, ch, check, broken); err != nil {
				return err
			}
			if broken != nil {
				return codeError{code: exitDamaged, err: broken}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&check, "check", false, "print the chain's verdict and head after the records")
	return c
}

// printLog prints the records read (those before the break, if broken),
// as stored (--json) or as a table, and with check the verdict. A broken
// chain's error line is printed by report.
func (e *env) printLog(path string, ch oplog.Chain, check bool, broken *oplog.BrokenError) error {
	recs := ch.Records
	if recs == nil {
		recs = []oplog.Record{}
	}
	if e.jsonOut && check {
		j := map[string]any{"log": path, "intact": broken == nil, "count": len(recs), "head": ch.Head, "records": recs}
		if broken != nil {
			j["broken_line"], j["reason"] = broken.Line, broken.Reason
			delete(j, "head")
		}
		return printJSON(e.stdout, j)
	}
	if e.jsonOut {
		return printJSON(e.stdout, recs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tOP\tREPOSITORY\tSOURCE\tVERSIONS\tDETAIL")
	for _, r := range recs {
		vs := make([]string, len(r.Versions))
		for i, v := range r.Versions {
			vs[i] = fmt.Sprint(v)
		}
		versions := strings.Join(vs, ",")
		if versions == "" {
			versions = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.8s…\t%s\t%s\t%s\n", r.Seq, r.Time.Local().Format(time.DateTime), r.Op, r.Repo, r.Source, versions, r.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if check && broken == nil {
		_, err := fmt.Fprintf(e.stdout, "key-operation log %s: intact, %d record(s); head sha256 %s\n", path, len(recs), ch.Head)
		return err
	}
	return nil
}

// closeRepo closes r, which a command opened, and records what keys it
// used, if any (an unwrap-counts record; serve's covers its whole run).
// The reads and writes are done: a log that cannot take the record makes
// a warning and exit 1, and a command that failed keeps its own error.
func (e *env) closeRepo(r *repo.Repo, errp *error) {
	// The backup the command owes first, so that its key use is counted;
	// the record next, while the repository is open, so that the audit
	// log's closing checkpoint also goes to the store.
	r.Finish()
	op, used := keyUseOp(r)
	var err error
	if used {
		err = recordKeyOpTo(r.Home, op, r)
	}
	r.Close()
	if err != nil {
		if uerr := e.unrecorded(err); *errp == nil {
			*errp = uerr
		}
	}
}

// keyUseOp is the unwrap-counts record of r's key use; used is false
// when it used no key.
func keyUseOp(r *repo.Repo) (op keys.Op, used bool) {
	u := r.KeyUseCounts()
	detail := fmt.Sprintf("root-unwraps=%d bucket-key-cache-hits=%d", u.RootUnwraps, u.BucketKeyCacheHits)
	used = u.RootUnwraps > 0 || u.BucketKeyCacheHits > 0
	if s, ok := r.RootKeys().(*hsm.Source); ok {
		// The token's own counts, since it was (re)opened: they include
		// unwraps outside the repository's (the access table's).
		st := s.Stats()
		detail += fmt.Sprintf(" token-wraps=%d token-unwraps=%d token-cache-hits=%d", st.Wraps, st.Unwraps, st.CacheHits)
		used = used || st.Unwraps > 0 || st.CacheHits > 0
	}
	return keys.Op{Op: "unwrap-counts", Repo: r.ID(), Source: r.KeySource().Kind(), Detail: detail}, used
}

// rootVersions lists the root key versions not destroyed.
func rootVersions(vs []keyring.RootKeyInfo) []uint32 {
	var out []uint32
	for _, v := range vs {
		if v.State != keyring.StateDestroyed {
			out = append(out, v.Version)
		}
	}
	return out
}
