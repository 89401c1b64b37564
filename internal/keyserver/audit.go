package keyserver

// The key server's tamper-evident audit log (docs/keyserver.md, "The
// audit log"): internal/audit's log, in the state directory's audit/
// directory, its K_0 sealed under the server's own keyring. Every record
// the server writes to keyops.log is an entry too; releases and request
// refusals are written before the answer, and a release the log cannot
// take is not made. Each answer carries the newest checkpoint line
// (api.HeaderAuditCheckpoint), which clients keep.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// AuditOptions tune the server's audit log and its rate watch.
type AuditOptions struct {
	// Every is how many entries go between two checkpoints
	// (audit.DefaultEvery if zero).
	Every int
	// Interval: a checkpoint is also written this often while entries
	// come (0: only every Every entries and at Close).
	Interval time.Duration
	// Queue bounds the entries waiting to be written (65536 if zero).
	// Releases and refusals wait for room; handshake summaries and
	// anomalies do too.
	Queue int
	// Rate tunes the per-client rate watch on releases (root unwraps and
	// data-key unwraps). With Rate.CutOff, an anomalous client's
	// releases are refused (reason "rate") for that long, or until
	// Reload (SIGHUP).
	Rate audit.RateConfig
}

// reasonRate: a client cut off after a rate anomaly.
const reasonRate = "rate"

// AuditActor is the actor of the entries the server writes of itself
// (start, stop, a cut-off lifted); administrative commands write "cli".
const AuditActor = "keyserver"

// AuditDir is the state directory's audit log directory.
func (d Dir) AuditDir() string { return audit.Dir(string(d)) }

// InitAudit starts the audit log of an existing state directory that has
// none (keyserver audit-init): K_0 is sealed under the keyring's primary
// root key (passphrase), and checkpoints are copied to checkpoints
// (default: audit.DefaultCheckpoints(dir)). A directory that holds any
// of a log is refused (audit.ErrExists, or the damage).
func InitAudit(dir string, passphrase []byte, checkpoints string) error {
	kr, err := keyring.Open(Dir(dir).path(KeyringFile), passphrase)
	if err != nil {
		return err
	}
	defer kr.Close()
	return InitAuditWith(dir, kr, checkpoints)
}

// InitAuditWith is InitAudit with the root keys already open (a token's).
func InitAuditWith(dir string, kr RootKeys, checkpoints string) error {
	d := Dir(dir)
	if err := createAudit(d, kr, checkpoints); err != nil {
		return err
	}
	return d.record("audit-init", "audit log started in "+d.AuditDir())
}

// createAudit makes d's audit log with K_0 sealed under kr.
func createAudit(d Dir, kr RootKeys, checkpoints string) error {
	if l := audit.Locate(string(d), ""); l.Log || l.State || l.Record {
		if err := l.Check(); err != nil {
			return fmt.Errorf("%s already holds an audit log, damaged (%w): see docs/audit.md, \"Repair\": %w", d.AuditDir(), err, audit.ErrExists)
		}
		return fmt.Errorf("%s: %w", d.AuditDir(), audit.ErrExists)
	}
	if checkpoints == "" {
		checkpoints = audit.DefaultCheckpoints(string(d))
	}
	k0, err := secret.New()
	if err != nil {
		return err
	}
	defer k0.Wipe()
	rec, err := audit.Seal(context.Background(), AuditKeys(kr), kr.Repo(), k0, checkpoints)
	if err != nil {
		return err
	}
	_, err = audit.Create(d.AuditDir(), rec, k0, audit.Options{})
	return err
}

// auditAdmin appends an administrative operation (init, enroll, revoke)
// to d's audit log and checkpoints it, if d keeps one; a damaged one is
// an error (the operation was done), never skipped.
func (d Dir) auditAdmin(op, detail string) error {
	err := audit.Locate(string(d), "").Check()
	if errors.Is(err, audit.ErrNoLog) {
		return nil
	}
	if err != nil {
		return err
	}
	w, err := audit.Open(d.AuditDir(), audit.Options{})
	if err != nil {
		return err
	}
	if err := w.Append(audit.Entry{Kind: audit.KindKey, Actor: "cli", Op: op, Status: "ok", Detail: detail}); err != nil {
		return fmt.Errorf("the audit log did not record the %s: %w", op, err)
	}
	return w.Close()
}

// serverAudit is a running server's audit log (nil fields: none) and its
// rate watch (always).
type serverAudit struct {
	w         *audit.Writer
	q         *audit.Async
	watch     *audit.RateWatch
	anomalies prometheus.Counter
	failures  prometheus.Counter
}

// openAudit opens d's audit log, if it keeps one: a damaged one stops the
// server (as a key-operation log that cannot take a record does). It
// writes a checkpoint (if entries came since the last), so that every
// answer from the first carries one.
func (s *Server) openAudit(o AuditOptions) error {
	a := &s.aud
	a.watch = audit.NewRateWatch(o.Rate)
	a.anomalies = prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_keyserver_rate_anomalies_total",
		Help: "Releases that took a client far above its baseline (once per client per window step; the log names the client)."})
	a.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_keyserver_audit_write_failures_total",
		Help: "Audit entries that could not be written (releases are then refused; refusals stand)."})
	s.m.reg.MustRegister(a.anomalies, a.failures)
	err := audit.Locate(string(s.dir), "").Check()
	if errors.Is(err, audit.ErrNoLog) {
		s.log.Warn("no audit log: key operations are in keyops.log only, which is not MACed (start it with 'holdfast keyserver audit-init')")
		return nil
	}
	if err != nil {
		return fmt.Errorf("the audit log is damaged, so no key is served (docs/audit.md, \"Repair\"): %w", err)
	}
	w, err := audit.Open(s.dir.AuditDir(), audit.Options{Every: o.Every})
	if err != nil {
		return err
	}
	if err := w.Checkpoint(); err != nil {
		return fmt.Errorf("the audit log cannot take an entry, so no key is served: %w", err)
	}
	queue := o.Queue
	if queue <= 0 {
		queue = 65536
	}
	a.w = w
	a.q = audit.NewAsync(w, queue, o.Interval, func(err error, lost int) {
		a.failures.Add(float64(max(lost, 1)))
		s.log.Error("audit: entries were NOT written to the audit log", "entries", lost, "error", err.Error())
	})
	a.q.Add(audit.Entry{Kind: audit.KindKey, Actor: AuditActor, Op: "keyserver-start", Status: "ok"})
	s.log.Info("auditing key operations", "log", w.LogPath(), "checkpoints", w.Checkpoints())
	return nil
}

// closeAudit writes what is queued, a stop entry and the last checkpoint.
func (s *Server) closeAudit() error {
	if s.aud.q == nil {
		return nil
	}
	s.aud.q.Add(audit.Entry{Kind: audit.KindKey, Actor: AuditActor, Op: "keyserver-stop", Status: "ok"})
	return s.aud.q.Close()
}

// AuditCheckpoint is the newest checkpoint line of the server's audit
// log, as every answer carries it (nil: no audit log).
func (s *Server) AuditCheckpoint() []byte {
	if s.aud.w == nil {
		return nil
	}
	return s.aud.w.Newest()
}

// auditWait appends e before the caller answers; nil without an audit
// log.
func (s *Server) auditWait(ctx context.Context, e audit.Entry) error {
	if s.aud.q == nil {
		return nil
	}
	return s.aud.q.Wait(ctx, e)
}

// subject names what an AD concerns in an entry: the bucket id, or ""
// for the repository's system keys.
func subject(ad keys.AD) string {
	if ad.Bucket == (keys.ID{}) {
		return ""
	}
	return hex.EncodeToString(ad.Bucket[:])
}

// rateGate refuses a release to a client the rate watch cut off.
func (s *Server) rateGate(c call) error {
	if s.aud.watch.Refused(c.client.Name) {
		return refusalFor(reasonRate, "client %q is cut off after a rate anomaly (releases far above its baseline); an administrator lifts it (SIGHUP)", c.client.Name)
	}
	return nil
}

// released counts a release for the rate watch; an anomaly is logged,
// counted and written as an entry (not waited for: the release was made
// and recorded).
func (s *Server) released(c call) {
	an, ok := s.aud.watch.Observe(c.client.Name)
	if !ok {
		return
	}
	s.aud.anomalies.Inc()
	cfg := s.aud.watch.Config()
	detail := fmt.Sprintf("%s; %d releases in %v, limit %.0f (baseline %.0f)", c.describe(), an.Count, cfg.Window, an.Limit, an.Baseline)
	args := []any{"client", an.Actor, "count", an.Count, "limit", an.Limit, "baseline", an.Baseline}
	if !an.CutUntil.IsZero() {
		detail += "; releases refused until " + an.CutUntil.UTC().Format(time.RFC3339) + " or a reload (SIGHUP)"
		args = append(args, "refused_until", an.CutUntil)
	}
	s.log.Warn("rate anomaly: a client is taking keys far above its baseline", args...)
	if err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: "anomaly", Repo: s.repo, Source: keys.SourceKeyServer, Detail: detail}); err != nil {
		s.log.Error("the key-operation log did not record a rate anomaly", "error", err.Error())
	}
	if s.aud.q != nil {
		s.aud.q.Add(audit.Entry{Kind: audit.KindAnomaly, Actor: an.Actor, Op: "rate", Status: "anomaly", Detail: detail})
	}
}

// liftCutOffs ends every rate cut-off (Reload), logged in both logs.
func (s *Server) liftCutOffs() {
	lifted := s.aud.watch.Lift()
	if len(lifted) == 0 {
		return
	}
	sort.Strings(lifted)
	d := "rate cut-off lifted by a reload for " + strings.Join(lifted, ",")
	s.log.Info(d)
	if err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: "cut-off-lifted", Repo: s.repo, Source: keys.SourceKeyServer, Detail: d}); err != nil {
		s.log.Error("the key-operation log did not record a lifted cut-off", "error", err.Error())
	}
	if err := s.auditWait(context.Background(), audit.Entry{Kind: audit.KindKey, Actor: AuditActor, Op: "cut-off-lifted", Status: "ok", Detail: d}); err != nil {
		s.log.Error("the audit log did not record a lifted cut-off", "error", err.Error())
	}
}

// serverAuditLabel names the key server's own audit key K_0 in the
// associated data of its wrap, where a home's uses audit.ObjectID: the
// two are different keys, and no client, whatever its grant, can ask the
// server to wrap or open the server's (authorizeRoot refuses the AD).
const serverAuditLabel = "holdfast/v1/keyserver-audit-k0"

// ServerAuditObjectID is the object id bound into the wrap of the key
// server's K_0.
func ServerAuditObjectID(repo keys.ID) keys.ID {
	h := sha256.New()
	h.Write([]byte(serverAuditLabel))
	h.Write(repo[:])
	var id keys.ID
	copy(id[:], h.Sum(nil))
	return id
}

// AuditKeys is the key source under which the key server's audit log
// keeps K_0: kr, with the audit key's associated data moved to the key
// server's own object id (ServerAuditObjectID). `audit verify --dir`
// opens K_0 through it.
func AuditKeys(kr keys.Source) keys.Source { return auditKeys{kr} }

type auditKeys struct{ keys.Source }

func (a auditKeys) ad(ad keys.AD) keys.AD {
	if ad.Purpose == keys.PurposeSystemKey && ad.Object == audit.ObjectID(ad.Repo) {
		ad.Object = ServerAuditObjectID(ad.Repo)
	}
	return ad
}

func (a auditKeys) Wrap(ctx context.Context, ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	return a.Source.Wrap(ctx, ver, a.ad(ad), k)
}

func (a auditKeys) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	return a.Source.Unwrap(ctx, w, a.ad(ad))
}
