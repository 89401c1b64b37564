package catalog

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

// The tests here are PostgreSQL's own: the connection's requirements
// (mutual TLS 1.3, verify-full, no password) and the advisory lock. Each
// refusal stands beside a control that differs only in what is tested.

func TestAdvisoryLockKey(t *testing.T) {
	sum := sha256.Sum256([]byte("holdfast catalog"))
	if k := int64(binary.BigEndian.Uint64(sum[:8])); k != advisoryLockKey {
		t.Fatalf("advisoryLockKey = %d, SHA-256 gives %d", advisoryLockKey, k)
	}
}

func configOf(db pgtest.Database) PostgresConfig {
	return PostgresConfig{URL: db.URL, CAFile: db.CAFile, CertFile: db.CertFile, KeyFile: db.KeyFile}
}

// openPG opens cfg and closes it again; the error, if any.
func openPG(cfg PostgresConfig) error {
	c, err := OpenPostgres(context.Background(), cfg)
	if err == nil {
		c.Close()
	}
	return err
}

// connectRaw connects with pgx directly, with cfg's settings changed by
// edit: a client OpenPostgres would not make, for controls.
func connectRaw(t *testing.T, cfg PostgresConfig, edit func(*tls.Config)) error {
	t.Helper()
	pc, _, err := postgresConnConfig(cfg)
	mustNot(t, "config", err)
	edit(pc.TLSConfig)
	conn, err := pgx.ConnectConfig(context.Background(), pc)
	if err == nil {
		conn.Close(context.Background())
	}
	return err
}

func wantRefused(t *testing.T, what string, err error, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: connected", what)
	}
	for _, s := range says {
		if strings.Contains(err.Error(), s) {
			t.Logf("%s: refused: %v", what, err)
			return
		}
	}
	t.Fatalf("%s: refused, but not for the reason tested (want one of %q): %v", what, says, err)
}

func TestPostgresURLRefused(t *testing.T) {
	srv := pgtest.Shared(t)
	db := srv.NewDatabase(t, "url_refusals")
	good := configOf(db)
	mustNot(t, "control: the URL as given", openPG(good))
	withSSLMode := good
	withSSLMode.URL += "?sslmode=verify-full"
	mustNot(t, "control: sslmode=verify-full", openPG(withSSLMode))

	const secret = "hunter2-not-printed"
	for _, tc := range []struct{ name, url, says string }{
		{"password", strings.Replace(good.URL, "://url_refusals@", "://url_refusals:"+secret+"@", 1), "carries a password"},
		{"password parameter", good.URL + "?password=" + secret, `"password" is not allowed`},
		{"sslmode require", good.URL + "?sslmode=require", `sslmode "require" refused`},
		{"sslmode disable", good.URL + "?sslmode=disable", `sslmode "disable" refused`},
		{"sslrootcert", good.URL + "?sslrootcert=/etc/ssl/certs/ca-certificates.crt", `"sslrootcert" is not allowed`},
		{"no user", strings.Replace(good.URL, "url_refusals@", "", 1), "names no user"},
		{"host parameter", good.URL + "?host=/var/run/postgresql", `"host" is not allowed`},
		{"two hosts", strings.Replace(good.URL, "127.0.0.1:", "127.0.0.1:1,127.0.0.1:", 1), "exactly one host"},
		{"not a URL", "host=127.0.0.1 user=x password=" + secret, "not a postgres:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			cfg.URL = tc.url
			// Refused by postgresConnConfig, before any connection.
			_, _, err := postgresConnConfig(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("URL %s: %v, want an error saying %q", tc.name, err, tc.says)
			}
			err = openPG(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("OpenPostgres: %v", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error prints the password: %v", err)
			}
		})
	}

	// A key file that is not a key: the error names the files, not the
	// bytes.
	bad := filepath.Join(t.TempDir(), "bad.key")
	const keyBytes = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtcHJpbnRlZA==\n-----END PRIVATE KEY-----\n"
	mustNot(t, "write", os.WriteFile(bad, []byte(keyBytes), 0o600))
	cfg := good
	cfg.KeyFile = bad
	err := openPG(cfg)
	if err == nil {
		t.Fatal("a bad key file was accepted")
	}
	if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "secret-key") {
		t.Fatalf("the error prints key material: %v", err)
	}
	cfg = good
	cfg.CertFile, cfg.KeyFile = "", ""
	wantRefused(t, "OpenPostgres with no client certificate", openPG(cfg), "mutual TLS")
}

func TestPostgresTLSRefused(t *testing.T) {
	srv := pgtest.Shared(t)
	db := srv.NewDatabase(t, "tls_refusals")
	good := configOf(db)

	t.Run("client without a certificate", func(t *testing.T) {
		mustNot(t, "control: the same client with its certificate", connectRaw(t, good, func(*tls.Config) {}))
		err := connectRaw(t, good, func(c *tls.Config) { c.Certificates = nil })
		wantRefused(t, "no client certificate", err, "certificate")
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		mustNot(t, "control: a certificate from the cluster's CA", openPG(good))
		cfg := good
		cfg.CertFile, cfg.KeyFile = pgtest.ForeignClientCert(t, db.User)
		wantRefused(t, "foreign client certificate", openPG(cfg), "certificate", "tls")
	})

	t.Run("client certificate for another user", func(t *testing.T) {
		cfg := good
		cfg.CertFile, cfg.KeyFile = srv.ClientCert(t, "someone_else")
		wantRefused(t, "certificate of another user", openPG(cfg), "certificate authentication failed")
	})

	t.Run("server certificate for another host", func(t *testing.T) {
		other := pgtest.StartWith(t, pgtest.Options{ServerNames: []string{"127.0.0.2", "db.other.example"}})
		odb := other.NewDatabase(t, "wrong_name")
		cfg := configOf(odb)
		wantRefused(t, "server certificate naming another host", openPG(cfg), "certificate is valid for 127.0.0.2, not 127.0.0.1")
		// The control: the same server and client, checking the name the
		// certificate has.
		mustNot(t, "control: the name on the certificate", connectRaw(t, cfg, func(c *tls.Config) { c.ServerName = "db.other.example" }))
	})

	t.Run("server limited to TLS 1.2", func(t *testing.T) {
		old := pgtest.StartWith(t, pgtest.Options{OnlyTLS12: true})
		odb := old.NewDatabase(t, "tls12")
		cfg := configOf(odb)
		wantRefused(t, "a TLS 1.2 server", openPG(cfg), "protocol version")
		// The control: the same client with its floor lowered connects.
		mustNot(t, "control: a client that accepts TLS 1.2", connectRaw(t, cfg, func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }))
	})
}

// TestPostgresWritersWaitForLock: a catalog write waits while another
// session holds the advisory lock, and goes through once it is released.
func TestPostgresWritersWaitForLock(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	db := srv.NewDatabase(t, "lock_wait")
	c := openAt(t, strings.Join([]string{"postgres", db.URL, db.CAFile, db.CertFile, db.KeyFile}, "\n"))
	mustNot(t, "control: a write with the lock free", c.SetMeta(ctx, "k", []byte("1")))

	other, _ := rawDB(t, strings.Join([]string{"postgres", db.URL, db.CAFile, db.CertFile, db.KeyFile}, "\n"))
	tx, err := other.BeginTx(ctx, nil)
	mustNot(t, "begin", err)
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, postgresDialect.lockSQL)
	mustNot(t, "take the lock", err)

	done := make(chan error, 1)
	go func() { done <- c.SetMeta(ctx, "k", []byte("2")) }()
	// Wait until the write is queued on the lock (PostgreSQL says so in
	// pg_locks), checking it has not gone through meanwhile.
	for {
		var waiting int
		err := other.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting)
		mustNot(t, "pg_locks", err)
		if waiting == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the write went through while the lock was held: %v", err)
		default:
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the write went through while the lock was held: %v", err)
	default:
	}
	if v, err := c.GetMeta(ctx, "k"); err != nil || string(v) != "1" {
		t.Fatalf("meta while the writer waits: %q, %v", v, err)
	}
	mustNot(t, "release the lock", tx.Rollback())
	mustNot(t, "the write after the release", <-done)
	if v, err := c.GetMeta(ctx, "k"); err != nil || string(v) != "2" {
		t.Fatalf("meta after the write: %q, %v", v, err)
	}
}
