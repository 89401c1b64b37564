package main

// This file owns `holdfast audit` (init, verify, show) and the audit
// log's hooks: every key operation recordKeyOp records (keys.go) and,
// under serve, every gateway operation (auditEvents) and the rate watch
// (auditAccess). The log itself is internal/audit; docs/audit.md says
// what it protects and what it does not.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/versity/versitygw/s3err"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/gateway"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

func (e *env) auditCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit init|verify|show",
		Short: "The tamper-evident audit log of key and gateway operations",
		Long: `audit keeps HOME/audit/audit.log: one line per key operation and, under
'holdfast serve', per S3 operation, hash-chained and MACed under keys that
ratchet forward, with checkpoints copied to a file outside the directory
(docs/audit.md):

  audit init [--checkpoints PATH]     start the log (serve --audit does too)
  audit verify [--checkpoints PATH]   check every line, the off-box and the store's checkpoints
  audit checkpoint                    checkpoint now, and copy it to the store
  audit show [--since T] [--json]     print the entries (unverified: see verify)

With --dir D, verify and show read a key server's log (D/audit; its K_0
opens with the server's keyring passphrase), and each --checkpoints FILE is
a client's copy of its checkpoints (HOME/keyserver-checkpoints.log).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return usagef("usage: holdfast audit init|verify|show (see 'holdfast help audit')")
		},
	}
	c.AddCommand(e.auditInitCmd(), e.auditVerifyCmd(), e.auditCheckpointCmd(), e.auditShowCmd())
	return c
}

func (e *env) auditInitCmd() *cobra.Command {
	var cp string
	c := &cobra.Command{
		Use:   "init [--checkpoints PATH]",
		Short: "Start the audit log: a fresh K_0, sealed under the root key",
		Long: `init makes HOME/audit: a random K_0 sealed under the repository's primary
root key (the verifier's copy), the genesis checkpoint, and the writer's
state. Checkpoints are copied to PATH (default HOME/audit-checkpoints.log):
put it on another machine or a write-once mount, since a copy an intruder
can cut is no check on the log's tail. Exit 7 if the log exists.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			r, err := e.open(c.Context(), false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			if cp == "" {
				cp = audit.DefaultCheckpoints(r.Home)
			}
			err = createAudit(c.Context(), r, cp, func(err error) {
				warnf(e.stderr, "%v: the log was made; the store gets the next checkpoint", err)
			})
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, map[string]string{"log": audit.Dir(r.Home), "checkpoints": cp})
			}
			fmt.Fprintf(e.stdout, "created audit log %s\ncheckpoints copied to %s\n", audit.Dir(r.Home), cp)
			return nil
		},
	}
	c.Flags().StringVar(&cp, "checkpoints", "", "file the checkpoints are copied to (default HOME/audit-checkpoints.log)")
	return c
}

// createAudit starts r's audit log, its checkpoints copied to cp. A
// directory that holds any of a log (a log, a state or a record, even
// damaged) is refused: its repair is in docs/audit.md. An off-box copy
// left by an earlier log is appended to. The genesis checkpoint is copied
// to r's store too; a copy that fails goes to storeFailed (the log is
// made all the same).
func createAudit(ctx context.Context, r *repo.Repo, cp string, storeFailed func(error)) error {
	dir := audit.Dir(r.Home)
	if l := audit.Locate(r.Home, ""); l.Log || l.State || l.Record {
		if err := l.Check(); err != nil {
			return codeError{code: exitRefused, err: fmt.Errorf("%s already holds an audit log, damaged (%w): see docs/audit.md, \"Repair\"", dir, err)}
		}
		return codeError{code: exitRefused, err: fmt.Errorf("%s already holds an audit log", dir)}
	}
	k0, err := secret.New()
	if err != nil {
		return err
	}
	defer k0.Wipe()
	rec, err := audit.Seal(ctx, r.KeySource(), r.ID(), k0, cp)
	if err != nil {
		return err
	}
	_, err = audit.Create(dir, rec, k0, audit.Options{Sink: r, OnSinkError: storeFailed})
	if errors.Is(err, audit.ErrExists) {
		return codeError{code: exitRefused, err: err}
	}
	return err
}

func (e *env) auditVerifyCmd() *cobra.Command {
	var cps []string
	var ksDir string
	c := &cobra.Command{
		Use:   "verify [--checkpoints PATH]... | verify --dir KSDIR [--checkpoints FILE]...",
		Short: "Check every entry of the audit log, its off-box and its store checkpoints",
		Long: `verify opens K_0 with the repository's keys and walks the log: each line
must be in its one encoding, carry the next seq, name the SHA-256 of the line
before it and carry the MAC of its ratchet key. Then each off-box checkpoint
(--checkpoints, default the file the log was made with), and each one the
repository's store holds, must carry its MAC and be the log's line at its
seq: a log cut or rewritten before its newest checkpoint does not reach it
(one in the store is named "in the store"). K_0 comes from
HOME/audit/k0.sealed or, if that is missing or damaged, from the copy in the
off-box file (verify says which). Exit 0: intact. Exit 4: the first bad
entry (line and seq), the newest checkpoint the log does not reach, a
missing or damaged sealed record or log, a store checkpoint that does not
open are named. Exit 3: no audit log. A K_0 sealed under an older root key
version is sealed again under the primary one (retire needs that;
docs/audit.md). A second and further --checkpoints are further copies: each
checkpoint line they hold must be the log's (a log that ends before one is
named as not reaching it, in that file).

With --dir KSDIR, verify checks a key server's audit log (KSDIR/audit),
opening K_0 with the server's keyring (its passphrase: HOLDFAST_PASSPHRASE,
--passphrase-file or the prompt), against its off-box copy (the one the
log was made with) and each --checkpoints FILE, a client's copy
(HOME/keyserver-checkpoints.log, and its rotated .1).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			if ksDir != "" {
				return e.verifyKeyServerAudit(c.Context(), ksDir, cps)
			}
			home, err := e.homeDir()
			if err != nil {
				return err
			}
			var cp string
			var copies []string
			if len(cps) > 0 {
				cp, copies = cps[0], cps[1:]
			}
			l := audit.Locate(home, cp)
			if !l.Present() {
				return fmt.Errorf("no audit log in %s: run 'holdfast audit init': %w", l.Dir, repo.ErrNotFound)
			}
			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			stored, err := storeCheckpoints(ctx, r)
			if err != nil {
				return err
			}
			rep, verr := audit.VerifyKeysWith(ctx, l, r.KeySource(), r.ID(), audit.VerifyOptions{Store: stored, StoreRead: true, Copies: copies})
			if rep.Resealed != 0 && !e.quiet {
				fmt.Fprintf(e.stderr, "holdfast: sealed the audit key again under root key version %d\n", rep.Resealed)
			}
			return e.printAuditVerdict(rep, verr)
		},
	}
	c.Flags().StringArrayVar(&cps, "checkpoints", nil, "off-box checkpoint copy to check against (default: the one the log was made with); repeated, or with --dir: further copies (a key server client's)")
	c.Flags().StringVar(&ksDir, "dir", "", "verify the audit log of this key server state directory")
	return c
}

// verifyKeyServerAudit verifies the audit log of the key server state
// directory dir with K_0 opened by its keyring, against its off-box copy
// and copies (clients' files; one naming the off-box copy itself is
// checked once, as that).
func (e *env) verifyKeyServerAudit(ctx context.Context, dir string, copies []string) error {
	l := audit.Locate(dir, "")
	if !l.Present() {
		return fmt.Errorf("no audit log in %s: run 'holdfast keyserver audit-init --dir %s': %w", l.Dir, dir, repo.ErrNotFound)
	}
	var more []string
	for _, c := range copies {
		if a, err := filepath.Abs(c); err == nil && a == l.Checkpoints {
			continue
		}
		more = append(more, c)
	}
	if err := e.hardenForKeys(); err != nil {
		return err
	}
	kr, err := e.openKeyServerRoot(dir)
	if err != nil {
		return err
	}
	defer kr.Close()
	rep, verr := audit.VerifyKeysWith(ctx, l, keyserver.AuditKeys(kr), kr.Repo(), audit.VerifyOptions{Copies: more})
	if rep.Resealed != 0 && !e.quiet {
		fmt.Fprintf(e.stderr, "holdfast: sealed the audit key again under root key version %d\n", rep.Resealed)
	}
	return e.printAuditVerdict(rep, verr)
}

// storeCheckpoints reads the audit checkpoints r's store holds.
func storeCheckpoints(ctx context.Context, r *repo.Repo) ([]audit.StoredCheckpoint, error) {
	cps, err := r.AuditCheckpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store's audit checkpoints: %w", err)
	}
	out := make([]audit.StoredCheckpoint, len(cps))
	for i, c := range cps {
		out[i] = audit.StoredCheckpoint{Name: c.Object, Line: c.Line, Err: c.Err}
	}
	return out, nil
}

// The repository keeps the audit log's checkpoints in its store.
var _ audit.CheckpointSink = (*repo.Repo)(nil)

// printAuditVerdict prints what verify found; damage is exit 4, its line
// printed by report.
func (e *env) printAuditVerdict(rep audit.Report, verr error) error {
	var dmg *audit.Damage
	if verr != nil && !errors.As(verr, &dmg) {
		return verr
	}
	for _, w := range rep.Warnings {
		warnf(e.stderr, "%s", w)
	}
	if e.jsonOut {
		warnings := append([]string{}, rep.Warnings...)
		j := map[string]any{"log": rep.Log, "intact": dmg == nil, "entries": rep.Entries, "checkpoints": rep.Checkpoints,
			"offbox_checkpoints": rep.OffBox, "sealed_record": rep.Record, "warnings": warnings}
		if rep.StoreChecked {
			j["store_checkpoints"], j["newest_store_checkpoint"] = rep.StoreCheckpoints, rep.NewestStore
		}
		if len(rep.Copies) > 0 {
			j["copies"] = rep.Copies
		}
		if rep.Entries > 0 {
			j["last_seq"], j["head"] = rep.LastSeq, rep.Head
		}
		if dmg != nil {
			j["bad_entry"], j["unreached_checkpoint"], j["problems"] = dmg.BadEntry, dmg.Checkpoint, append([]string{}, dmg.Problems...)
		}
		if err := printJSON(e.stdout, j); err != nil {
			return err
		}
	} else if dmg == nil {
		fmt.Fprintf(e.stdout, "audit log %s: intact, %d entries (seq 0…%d); head sha256 %s\n", rep.Log, rep.Entries, rep.LastSeq, rep.Head)
		fmt.Fprintf(e.stdout, "off-box checkpoints %s: %d, newest seq %d, all reached\n", rep.Checkpoints, rep.OffBox, rep.NewestOffBox)
		switch {
		case !rep.StoreChecked:
		case rep.StoreCheckpoints == 0:
			fmt.Fprintf(e.stdout, "store checkpoints: none\n")
		default:
			fmt.Fprintf(e.stdout, "store checkpoints: %d, newest seq %d, all reached\n", rep.StoreCheckpoints, rep.NewestStore)
		}
		for _, c := range rep.Copies {
			fmt.Fprintf(e.stdout, "checkpoint copy %s: %d, newest seq %d, all reached\n", c.File, c.Checkpoints, c.Newest)
		}
		fmt.Fprintf(e.stdout, "audit key opened from %s\n", rep.Record)
	} else if rep.Record != "" {
		fmt.Fprintf(e.stderr, "holdfast: the audit key was opened from %s\n", rep.Record)
	}
	if dmg != nil {
		return codeError{code: exitDamaged, err: dmg}
	}
	return nil
}

func (e *env) auditCheckpointCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Checkpoint the audit log now, and copy the newest checkpoint to the store",
		Long: `checkpoint appends a checkpoint to HOME/audit/audit.log if entries came
after the last one (copied to the off-box file as always), and copies the
newest checkpoint to the repository's store, where 'audit verify' checks it
too (docs/audit.md, "Checkpoints"). serve copies its checkpoints to the
store itself; run this after key commands when serve is not running, or
from cron. Exit 3 if there is no audit log; exit 1 if the store did not
take the copy (the checkpoint is in the log and the off-box file).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			home, err := e.homeDir()
			if err != nil {
				return err
			}
			l := audit.Locate(home, "")
			if err := l.Check(); errors.Is(err, audit.ErrNoLog) {
				return fmt.Errorf("no audit log in %s: run 'holdfast audit init': %w", l.Dir, repo.ErrNotFound)
			} else if err != nil {
				return err
			}
			r, err := e.open(c.Context(), false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			w, err := audit.Open(l.Dir, audit.Options{Sink: r})
			if err != nil {
				return err
			}
			if err := w.Checkpoint(); err != nil {
				return err
			}
			if !e.quiet {
				fmt.Fprintf(e.stdout, "checkpoint copied to %s and to the store\n", w.Checkpoints())
			}
			return nil
		},
	}
}

func (e *env) auditShowCmd() *cobra.Command {
	var since, ksDir string
	c := &cobra.Command{
		Use:   "show [--dir KSDIR] [--since RFC3339|DURATION] [--json]",
		Short: "Print the audit log's entries (the hash chain is checked, the MACs are not)",
		Long: `show prints the entries of HOME/audit/audit.log, oldest first, from --since
on (a time, 2026-01-02T15:04:05Z, or a duration back from now, 24h); --json
prints them as stored. It needs no key, so it checks only the hash chain:
'holdfast audit verify' checks the MACs and the checkpoints. Exit 4 if the
chain breaks (the entries before the break are printed), 3 if there is no
log. With --dir KSDIR it prints a key server's log (KSDIR/audit).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			dir := audit.Dir(ksDir)
			if ksDir == "" {
				home, err := e.homeDir()
				if err != nil {
					return err
				}
				dir = audit.Dir(home)
			}
			rerr := e.printEntries(dir, from)
			if errors.Is(rerr, audit.ErrNoLog) {
				return fmt.Errorf("%w: run 'holdfast audit init': %w", rerr, repo.ErrNotFound)
			}
			var dmg *audit.Damage
			if errors.As(rerr, &dmg) {
				return codeError{code: exitDamaged, err: dmg}
			}
			return rerr
		},
	}
	c.Flags().StringVar(&since, "since", "", "only entries from this time (RFC 3339) or this long ago (a duration: 90m, 24h)")
	c.Flags().StringVar(&ksDir, "dir", "", "print the audit log of this key server state directory")
	return c
}

// parseSince reads --since: an RFC 3339 time or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--since %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (24h)", s)
}

// printEntries prints the entries of the log in dir from from on, as it
// reads them (the log can be larger than memory): a JSON array, or a
// table aligned in blocks of showBlock rows. What was printed before a
// break in the chain stays printed; the *Damage is returned.
func (e *env) printEntries(dir string, from time.Time) error {
	const showBlock = 1000
	var tw *tabwriter.Writer
	n := 0
	if e.jsonOut {
		fmt.Fprint(e.stdout, "[")
	} else {
		tw = tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tACTOR\tOP\tSUBJECT\tSTATUS\tDETAIL")
	}
	err := audit.Scan(dir, func(en audit.Entry) error {
		if en.Time.Before(from) {
			return nil
		}
		n++
		if e.jsonOut {
			b, err := json.MarshalIndent(en, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if n == 1 {
				sep = "\n  "
			}
			_, err = fmt.Fprintf(e.stdout, "%s%s", sep, b)
			return err
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.Seq, en.Time.Local().Format(time.DateTime), en.Kind,
			dash(en.Actor), en.Op, dash(en.Subject), dash(en.Status), en.Detail)
		if n%showBlock == 0 {
			return tw.Flush()
		}
		return nil
	})
	if errors.Is(err, audit.ErrNoLog) {
		return err
	}
	if e.jsonOut {
		if n > 0 {
			fmt.Fprint(e.stdout, "\n")
		}
		fmt.Fprint(e.stdout, "]\n")
	} else if ferr := tw.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recordAudit appends op to home's audit log, if the home keeps one, and
// checkpoints it (a command's record is then vouched for off the box at
// once). A home with any of a log (its directory's files, or the default
// off-box copy) keeps one: a missing piece fails the record, never skips
// it.
func recordAudit(home string, op keys.Op, sink audit.CheckpointSink) error {
	err := audit.Locate(home, "").Check()
	if errors.Is(err, audit.ErrNoLog) {
		return nil
	}
	if err != nil {
		return err
	}
	var o audit.Options
	if sink != nil {
		// The off-box file is the checkpoint's first copy: a store that
		// fails now is a warning, and the next checkpoint tries again.
		o.Sink = sink
		o.OnSinkError = func(err error) {
			warnf(os.Stderr, "the audit checkpoint was not copied to the store (the next one tries again): %v", err)
		}
	}
	w, err := audit.Open(audit.Dir(home), o)
	if err != nil {
		return err
	}
	vs := make([]string, len(op.Versions))
	for i, v := range op.Versions {
		vs[i] = fmt.Sprint(v)
	}
	detail := fmt.Sprintf("repo=%x source=%s", op.Repo[:8], oplog.SourceName(op.Source))
	if len(vs) > 0 {
		detail += " versions=" + strings.Join(vs, ",")
	}
	if op.Detail != "" {
		detail += " " + op.Detail
	}
	if err := w.Append(audit.Entry{Time: op.Time, Kind: audit.KindKey, Actor: "cli", Op: op.Op, Status: "ok", Detail: detail}); err != nil {
		return err
	}
	return w.Close()
}

// auditReady checks, writing nothing, that home's audit log, if the home
// keeps one, can take a record now (a missing piece is damage).
func auditReady(home string) error {
	l := audit.Locate(home, "")
	err := l.Check()
	if errors.Is(err, audit.ErrNoLog) {
		return nil
	}
	if err != nil {
		return err
	}
	w, err := audit.Open(l.Dir, audit.Options{})
	if err != nil {
		return err
	}
	return w.Ready()
}

// auditFlags are serve's audit options.
type auditFlags struct {
	create   bool
	every    int
	interval time.Duration
	queue    int
	rate     audit.RateConfig
}

func (f *auditFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.BoolVar(&f.create, "audit", false, "start the audit log if the home has none (HOME/audit; 'holdfast audit init' does the same); a home that has one is always audited")
	fl.IntVar(&f.every, "audit-checkpoint-every", audit.DefaultEvery, "audit entries between two checkpoints")
	fl.DurationVar(&f.interval, "audit-checkpoint-interval", time.Minute, "also checkpoint this often while requests come (0: only every N and at shutdown)")
	fl.IntVar(&f.queue, "audit-queue", 65536, "audit entries waiting to be written; beyond, entries are dropped and counted")
	fl.DurationVar(&f.rate.Window, "audit-rate-window", time.Minute, "window over which each access key's key-using operations are counted")
	fl.Float64Var(&f.rate.Floor, "audit-rate-floor", 1000, "least baseline, in key-using operations per window")
	fl.Float64Var(&f.rate.Factor, "audit-rate-factor", 10, "an access key over factor × its baseline (or the floor) in a window is an anomaly")
	fl.DurationVar(&f.rate.CutOff, "audit-rate-cutoff", 0, "refuse an anomalous access key's requests for this long (0: warn only)")
}

// serveAudit wraps serve's events sink and access checks with the audit
// log, if the home keeps one (or f.create): every operation is queued as
// an entry, key-using ones are counted by the rate watch, and an access
// key the watch cut off is refused. closeAudit writes what is queued and
// the last checkpoint.
func (e *env) serveAudit(ctx context.Context, r *repo.Repo, f auditFlags, m *gateway.Metrics, acc gateway.Access, log *slog.Logger) (gateway.Events, gateway.Access, func(), error) {
	dir := audit.Dir(r.Home)
	err := audit.Locate(r.Home, "").Check()
	ev := newAuditEvents(m, f, log)
	if errors.Is(err, audit.ErrNoLog) && f.create {
		err = createAudit(ctx, r, audit.DefaultCheckpoints(r.Home), ev.storeFailed)
	}
	if errors.Is(err, audit.ErrNoLog) {
		log.Info("no audit log: requests are not audited (start it with 'holdfast audit init' or serve --audit)")
		return m, acc, func() {}, nil
	}
	if err != nil && !errors.Is(err, audit.ErrDamaged) {
		return nil, nil, nil, err
	}
	// A damaged log (a piece missing) is not skipped: serve runs, every
	// append fails, loudly (writeFailed, the failing gauge, a warning a
	// minute) until it is repaired.
	if err != nil {
		log.Error("audit: the audit log is damaged: requests are NOT audited until it is repaired", "error", err.Error())
	}
	// Checkpoints go to the store too; a copy that fails is logged and
	// counted, and the next checkpoint tries again.
	w, err := audit.Open(dir, audit.Options{Every: f.every, Sink: r, OnSinkError: ev.storeFailed})
	if err != nil {
		return nil, nil, nil, err
	}
	ev.q = audit.NewAsync(w, f.queue, f.interval, ev.writeFailed)
	failing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_audit_failing",
		Help: "1 while the last audit append failed (requests are served unaudited: docs/audit.md, \"Repair\"), else 0."},
		func() float64 {
			if since, _ := ev.q.Failing(); !since.IsZero() {
				return 1
			}
			return 0
		})
	if err := m.Register(ev.failures, ev.storeFailures, ev.anomalies, ev.refused, failing); err != nil {
		ev.q.Close()
		return nil, nil, nil, err
	}
	ev.q.Add(audit.Entry{Kind: audit.KindKey, Actor: "serve", Op: "serve-start", Status: "ok"})
	log.Info("auditing requests", "log", w.LogPath(), "checkpoints", w.Checkpoints())
	stop := make(chan struct{})
	done := make(chan struct{})
	go ev.warnWhileFailing(time.Minute, stop, done)
	closeAudit := func() {
		close(stop)
		<-done
		ev.q.Add(audit.Entry{Kind: audit.KindKey, Actor: "serve", Op: "serve-stop", Status: "ok"})
		if err := ev.q.Close(); err != nil {
			ev.writeFailed(err, 0)
		}
	}
	return ev, auditAccess{Access: acc, ev: ev}, closeAudit, nil
}

// warnWhileFailing logs a warning every period while audit appends fail:
// a log that stopped taking entries (a stray byte appended, a deleted
// record) must not go unnoticed between error lines.
func (a *auditEvents) warnWhileFailing(period time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if since, err := a.q.Failing(); !since.IsZero() {
				a.log.Warn("audit: auditing is FAILING: requests are served unaudited (repair: docs/audit.md, \"Repair\"; 'holdfast audit verify' names the damage)",
					"since", since, "error", err.Error())
			}
		}
	}
}

// auditEvents is serve's events sink with the audit log: Metrics, plus
// an entry per operation (gateway.ObjectEvents).
type auditEvents struct {
	*gateway.Metrics
	q                            *audit.Async
	watch                        *audit.RateWatch
	log                          *slog.Logger
	failures, anomalies, refused prometheus.Counter
	storeFailures                prometheus.Counter

	mu          sync.Mutex
	lastRefusal map[string]cutRefusals // by access key
}

// cutRefusals are a cut-off key's refused access checks since its last
// refusal entry.
type cutRefusals struct {
	at time.Time
	n  int
}

var _ gateway.ObjectEvents = (*auditEvents)(nil)

func newAuditEvents(m *gateway.Metrics, f auditFlags, log *slog.Logger) *auditEvents {
	return &auditEvents{
		Metrics: m,
		watch:   audit.NewRateWatch(f.rate),
		log:     log,
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_audit_write_failures_total",
			Help: "Audit entries (or checkpoints) that could not be written: the operations they record were done unaudited."}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_audit_store_checkpoint_failures_total",
			Help: "Audit checkpoints that could not be copied to the store (they are in the log and the off-box copy; the next checkpoint tries again)."}),
		anomalies: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_audit_rate_anomalies_total",
			Help: "Access keys found using keys far above their baseline (see serve --audit-rate-*)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_audit_rate_refused_checks_total",
			Help: "Access checks refused because the access key was cut off after a rate anomaly (a request makes one or more)."}),
		lastRefusal: map[string]cutRefusals{},
	}
}

// keyUsing are the operations that wrap or unwrap a data key; others do
// when the gateway says so (keyUse: HeadObject with partNumber,
// GetObjectAttributes).
var keyUsing = map[string]bool{
	"GetObject": true, "PutObject": true, "CopyObject": true,
	"CreateMultipartUpload": true, "UploadPart": true, "UploadPartCopy": true, "CompleteMultipartUpload": true,
	// A tag change opens the object and seals it again (repo.Reseal).
	"PutObjectTagging": true, "DeleteObjectTagging": true,
}

// Object implements gateway.ObjectEvents: the entry is queued, never
// waited for; a refusal (AccessDenied) is its own kind.
func (a *auditEvents) Object(op, requestID, accessKey, bucket, key string, keyUse bool, err error) {
	kind, status := audit.KindObject, "ok"
	if err != nil {
		status = "InternalError"
		var ae s3err.APIError
		if errors.As(err, &ae) {
			status = ae.Code
		}
		if status == "AccessDenied" {
			kind = audit.KindRefusal
		}
	}
	subject := bucket
	if key != "" {
		subject += "/" + key
	}
	a.q.Add(audit.Entry{Kind: kind, Actor: accessKey, Op: op, Subject: subject, Status: status, Detail: "request " + requestID})
	if kind != audit.KindRefusal && (keyUsing[op] || keyUse) {
		if an, ok := a.watch.Observe(accessKey); ok {
			a.anomaly(an)
		}
	}
}

func (a *auditEvents) anomaly(an audit.Anomaly) {
	a.anomalies.Inc()
	detail := fmt.Sprintf("%d key-using operations in %v, limit %.0f (baseline %.0f)", an.Count, a.watch.Config().Window, an.Limit, an.Baseline)
	args := []any{"access_key", an.Actor, "count", an.Count, "limit", an.Limit, "baseline", an.Baseline}
	if !an.CutUntil.IsZero() {
		detail += "; refused until " + an.CutUntil.UTC().Format(time.RFC3339)
		args = append(args, "refused_until", an.CutUntil)
	}
	a.log.Warn("audit: rate anomaly: an access key is using keys far above its baseline", args...)
	a.q.Add(audit.Entry{Kind: audit.KindAnomaly, Actor: an.Actor, Op: "rate", Status: "anomaly", Detail: detail})
}

// writeFailed is loud: the operations were done, unaudited.
func (a *auditEvents) writeFailed(err error, lost int) {
	a.failures.Add(float64(max(lost, 1)))
	a.log.Error("audit: entries were NOT written to the audit log; the operations they record were done", "entries", lost, "error", err.Error())
}

// storeFailed is loud too: the checkpoint is in the log and the off-box
// copy, not yet in the store.
func (a *auditEvents) storeFailed(err error) {
	a.storeFailures.Inc()
	a.log.Error("audit: the checkpoint was NOT copied to the store; it is in the log and the off-box copy, and the next checkpoint tries again", "error", err.Error())
}

// auditAccess refuses an access key the rate watch cut off, before the
// operation runs.
type auditAccess struct {
	gateway.Access
	ev *auditEvents
}

func (a auditAccess) Allowed(key, bucket string, op gateway.Op) bool {
	if a.ev.watch.Refused(key) {
		a.ev.refusedCheck(key, bucket)
		return false
	}
	return a.Access.Allowed(key, bucket, op)
}

// Suspended is true for a key the rate watch cut off: it is refused
// ListBuckets too, which asks no Allowed.
func (a auditAccess) Suspended(key string) bool {
	if a.ev.watch.Refused(key) {
		a.ev.refusedCheck(key, "")
		return true
	}
	return a.Access.Suspended(key)
}

// refusedCheck records a refused access check. The front end asks about
// a bucket (GetBucketAcl) before it calls the operation, so a cut-off
// key's request ends there, unseen by Object, after several checks: the
// refusal entry is written here instead, at most one a second per key,
// counting the checks refused since the last.
func (a *auditEvents) refusedCheck(key, bucket string) {
	a.refused.Inc()
	now := time.Now()
	a.mu.Lock()
	r := a.lastRefusal[key]
	r.n++
	write := now.Sub(r.at) >= time.Second
	if write {
		a.lastRefusal[key] = cutRefusals{at: now}
	} else {
		a.lastRefusal[key] = r
	}
	a.mu.Unlock()
	if write {
		a.q.Add(audit.Entry{Kind: audit.KindRefusal, Actor: key, Op: "cut-off", Subject: bucket, Status: "AccessDenied",
			Detail: fmt.Sprintf("cut off after a rate anomaly; %d access check(s) refused since the last entry", r.n)})
	}
}

// resealAudit seals the audit log's K_0 again under the primary root key
// version if an older one holds it (in the home's record and, appended,
// in the off-box copy), so that retiring that version (keys retire,
// shred) does not leave the log unverifiable. A home without an audit
// log has nothing to do; a damaged one (a missing record among others)
// stops the retirement, which could strand K_0.
func (e *env) resealAudit(ctx context.Context, r *repo.Repo) error {
	dir := audit.Dir(r.Home)
	if err := audit.Locate(r.Home, "").Check(); errors.Is(err, audit.ErrNoLog) {
		return nil
	} else if err != nil {
		return fmt.Errorf("the audit log is damaged, so retiring a root key version could leave it unverifiable: %w", err)
	}
	rec, err := audit.ReadRecord(dir)
	if err != nil {
		return fmt.Errorf("the audit log's sealed key: %w", err)
	}
	k0, err := audit.Unseal(ctx, r.KeySource(), r.ID(), rec)
	if err != nil {
		return fmt.Errorf("the audit log's sealed key does not open, so retiring a root key version could leave the log unverifiable: %w", err)
	}
	defer k0.Wipe()
	if _, err := audit.Rewrap(ctx, dir, r.KeySource(), r.ID(), rec, k0); err != nil {
		return fmt.Errorf("sealing the audit log's key under root key version %d: %w", r.KeySource().Primary(), err)
	}
	return nil
}
