package catalog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresConfig says where the catalog's PostgreSQL database is and how to
// reach it. TLS is always on, version 1.3 at least: the server's
// certificate must chain to CAFile and name the URL's host, and the client
// presents CertFile/KeyFile (PostgreSQL's "cert" authentication: the
// certificate's common name is the database user). No password is used.
type PostgresConfig struct {
	// URL is postgres://user@host:port/dbname, without a password. The
	// only sslmode it may carry is verify-full, which is what it gets.
	URL string
	// CAFile holds the PEM certificates the server's must chain to.
	CAFile string
	// CertFile and KeyFile hold the client's PEM certificate and key.
	CertFile, KeyFile string
}

// urlParamsRefused are connection parameters OpenPostgres sets itself or
// refuses: passwords, TLS settings that PostgresConfig holds, and
// parameters that would override the URL's host, user or database.
var urlParamsRefused = []string{"host", "hostaddr", "port", "user", "dbname", "database", "password", "passfile", "sslpassword", "sslrootcert", "sslcert", "sslkey",
	"sslcertmode", "sslnegotiation", "sslsni", "service", "servicefile", "client_encoding"}

// OpenPostgres opens the catalog in the PostgreSQL database cfg names,
// creating the schema if the database has none (safely when several
// processes do so at once) and refusing one written by a newer schema
// (ErrNewerSchema). Many handles, in many processes on many hosts, may use
// the database at once: writers are serialised by an advisory lock
// (dialect.go), so the catalog behaves exactly as on SQLite.
//
// The database must have been created with ENCODING 'SQL_ASCII' (and
// TEMPLATE template0): keys are byte strings, as on SQLite, and any
// other server encoding would refuse keys that are not valid text in it.
// Keys compare bytewise (the columns are COLLATE "C"). A key or bucket
// name holding a NUL byte is refused: PostgreSQL's text never holds one.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (Catalog, error) {
	pc, where, err := postgresConnConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog: postgres: %w", err)
	}
	// The staging tables on every connection (see tempTables).
	db := stdlib.OpenDB(*pc, stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
		for _, q := range tempTables {
			if _, err := conn.Exec(ctx, postgresDialect.rebind(q)); err != nil {
				return fmt.Errorf("making the staging tables: %w", err)
			}
		}
		return nil
	}))
	n := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	c := newSQLCatalog(db, postgresDialect)
	if err := c.checkPostgres(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog: postgres %s: %w", where, err)
	}
	return c, nil
}

// postgresConnConfig checks cfg and makes the pgx configuration, with our
// TLS configuration. where names the database for messages (user, host,
// port and database; never a secret).
func postgresConnConfig(cfg PostgresConfig) (*pgx.ConnConfig, string, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url's errors quote the URL; a password in it must not be
		// printed.
		return nil, "", errors.New("the catalog URL does not parse (want postgres://user@host:port/dbname)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" || u.Opaque != "" {
		// Not a URL of ours (perhaps "key=value" settings): nothing of it
		// is printed.
		return nil, "", errors.New("the catalog URL is not a postgres:// URL (want postgres://user@host:port/dbname)")
	}
	where := (&url.URL{Scheme: u.Scheme, User: userOnly(u.User), Host: u.Host, Path: u.Path}).String()
	switch {
	case u.User != nil && hasPassword(u.User):
		return nil, "", fmt.Errorf("catalog URL %s carries a password; the catalog authenticates with a client certificate only", where)
	case u.User == nil || u.User.Username() == "":
		return nil, "", fmt.Errorf("catalog URL %s names no user", where)
	case u.Hostname() == "" || strings.Contains(u.Host, ","):
		return nil, "", fmt.Errorf("catalog URL %s: want exactly one host (TLS needs a network host)", where)
	case strings.Trim(u.Path, "/") == "":
		return nil, "", fmt.Errorf("catalog URL %s names no database", where)
	case u.Fragment != "":
		return nil, "", fmt.Errorf("catalog URL %s: unexpected fragment or opaque part", where)
	}
	q := u.Query()
	for _, k := range urlParamsRefused {
		if q.Has(k) {
			return nil, "", fmt.Errorf("catalog URL %s: parameter %q is not allowed (no passwords; TLS files go in the configuration)", where, k)
		}
	}
	if m := q.Get("sslmode"); q.Has("sslmode") && m != "verify-full" {
		return nil, "", fmt.Errorf("catalog URL %s: sslmode %q refused: the catalog always verifies the server in full", where, m)
	}
	tc, err := postgresTLS(cfg, u.Hostname())
	if err != nil {
		return nil, "", err
	}
	// pgx would build its TLS configuration from sslmode; it gets none,
	// and ours instead, with no fallback to another mode.
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	pc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, "", fmt.Errorf("catalog URL %s: %w", where, err)
	}
	pc.Password = "" // not even one from the environment or a password file
	pc.TLSConfig = tc
	pc.Fallbacks = nil
	// Text is bytes, unconverted and unchecked (see OpenPostgres).
	pc.RuntimeParams["client_encoding"] = "SQL_ASCII"
	return pc, where, nil
}

func userOnly(u *url.Userinfo) *url.Userinfo {
	if u == nil {
		return nil
	}
	return url.User(u.Username())
}

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

// postgresTLS is the client's TLS configuration: TLS 1.3 at least, the
// server verified against cfg.CAFile for host, the client's certificate
// presented.
func postgresTLS(cfg PostgresConfig, host string) (*tls.Config, error) {
	if cfg.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("a CA file, a client certificate and its key are all needed (mutual TLS)")
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %q holds no PEM certificate", cfg.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		// The error says what is wrong with the files, never their bytes.
		return nil, fmt.Errorf("client certificate %q and key %q: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      roots,
		ServerName:   host,
		Certificates: []tls.Certificate{cert},
	}, nil
}

// checkPostgres checks the server's encoding and the schema.
func (c *sqlCatalog) checkPostgres(ctx context.Context) error {
	var enc string
	if err := c.db.QueryRowContext(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		return err
	}
	if enc != "SQL_ASCII" {
		return fmt.Errorf("the database's encoding is %s; the catalog needs SQL_ASCII "+
			"(CREATE DATABASE ... ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0)", enc)
	}
	return c.initSchema(ctx)
}
