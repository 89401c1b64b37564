package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
)

// CatalogConfig says where the catalog is kept when it is not the SQLite
// file HOME/catalog.db: on PostgreSQL, on premises, reached over mutual
// TLS 1.3 (docs/design.md, "The catalog on PostgreSQL"). Several homes —
// gateways on several hosts — may name one database: they then serve one
// repository together. It holds no secret: the client key is named by its
// path, and the URL carries no password.
type CatalogConfig struct {
	Type string `json:"type"` // "postgres"
	URL  string `json:"url"`  // postgres://USER@HOST:PORT/DB
	CA   string `json:"ca"`   // PEM: the CA the server's certificate must chain to
	Cert string `json:"cert"` // PEM: this client's certificate
	Key  string `json:"key"`  // PEM: its private key (0600)
}

// CatalogPostgres is CatalogConfig.Type for PostgreSQL.
const CatalogPostgres = "postgres"

func (c *CatalogConfig) check() error {
	if c.Type != CatalogPostgres {
		return fmt.Errorf("catalog type %q: only %q is known", c.Type, CatalogPostgres)
	}
	if c.URL == "" || c.CA == "" || c.Cert == "" || c.Key == "" {
		return errors.New("a PostgreSQL catalog needs its URL, the server's CA, and a client certificate and key")
	}
	return nil
}

// absolute returns c with its file paths made absolute (relative to the
// working directory), so that the home works from anywhere.
func (c *CatalogConfig) absolute() (*CatalogConfig, error) {
	out := *c
	for _, p := range []*string{&out.CA, &out.Cert, &out.Key} {
		a, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(a); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		*p = a
	}
	return &out, nil
}

// Describe names the catalog for people (the URL carries no secret).
func (c *CatalogConfig) Describe() string {
	if c == nil {
		return "catalog.db in the home"
	}
	return "PostgreSQL " + c.URL
}

// openCatalog opens the home's catalog: the SQLite file, or the database
// the config names.
func openCatalog(ctx context.Context, home string, c *CatalogConfig) (catalog.Catalog, error) {
	if c == nil {
		return catalog.Open(ctx, filepath.Join(home, CatalogFile))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return catalog.OpenPostgres(ctx, catalog.PostgresConfig{URL: c.URL, CAFile: c.CA, CertFile: c.Cert, KeyFile: c.Key})
}

// CatalogDescription names the repository's catalog for people.
func (r *Repo) CatalogDescription() string { return r.cfg.Catalog.Describe() }

// AttachOptions configure Attach.
type AttachOptions struct {
	Home    string
	Catalog *CatalogConfig // required: the shared catalog
	// The store, as for Init: exactly one of StorePath (a directory) or
	// S3. It must be the store the repository lives in: Attach checks
	// that it holds the repository's marker.
	StorePath string
	S3        *S3Config
	// Keys is the repository's key source (a key server); the Repo takes
	// it over, and on failure the caller closes it.
	Keys  RootKeys
	Hooks *Hooks
}

// Attach makes a home for a repository that already exists in a shared
// catalog — a second gateway for the same repository: nothing is created
// in the catalog or the store. The catalog must name the key source's
// repository, and the store must hold that repository's marker, which
// must open under its keys.
func Attach(ctx context.Context, o AttachOptions) (_ *Repo, err error) {
	if o.Catalog == nil || o.Keys == nil {
		return nil, errors.New("attach: a shared catalog and a key source are required")
	}
	if _, err := os.Stat(filepath.Join(o.Home, ConfigFile)); err == nil {
		return nil, fmt.Errorf("a repository already exists at %q: %w", o.Home, ErrExists)
	}
	cc, err := o.Catalog.absolute()
	if err != nil {
		return nil, err
	}
	if err := cc.check(); err != nil {
		return nil, err
	}
	var sc StoreConfig
	if o.S3 != nil {
		sc = StoreConfig{Type: "s3", S3: o.S3}
	} else {
		if o.StorePath == "" {
			return nil, errors.New("attach: the repository's store is required")
		}
		p, err := filepath.Abs(o.StorePath)
		if err != nil {
			return nil, err
		}
		sc = StoreConfig{Type: "local", Path: p}
	}
	if err := os.MkdirAll(o.Home, 0o700); err != nil {
		return nil, err
	}
	id := o.Keys.Repo()
	bc := DefaultBackupConfig
	cfg := Config{Version: 1, Repository: fmt.Sprintf("%x", id[:]), Store: sc, Catalog: cc, Backup: &bc}
	r, err := openWith(ctx, o.Home, cfg, o.Keys, o.Hooks)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.kr = nil // the caller closes the key source
			r.Close()
		}
	}()
	got, err := r.cat.GetMeta(ctx, "repo-id")
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return nil, fmt.Errorf("the catalog %s holds no repository (create one with init or keyserver join first): %w", cc.Describe(), ErrNotFound)
	case err != nil:
		return nil, err
	case string(got) != string(id[:]):
		return nil, fmt.Errorf("the catalog %s holds repository %x, the key source %x: %w", cc.Describe(), got, id[:], ErrOtherRepository)
	}
	if err := r.checkMarker(ctx); err != nil {
		return nil, err
	}
	if err := r.checkCatalogFresh(ctx); err != nil {
		return nil, err
	}
	if err := r.checkCatalogHead(ctx); err != nil {
		return nil, err
	}
	if err := saveConfig(o.Home, cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// checkMarker reads the repository's marker from the store and checks
// that it opens under the root keys and names this repository.
func (r *Repo) checkMarker(ctx context.Context) error {
	id := r.id
	mo, err := object.Open(ctx, r.st, format.MarkerName(id),
		object.Expect{Identity: object.Identity{Kind: format.KindMarker, Repo: id, Object: id}},
		r.unwrapSystem(ctx, id, r.rootVersions()))
	if err != nil {
		return fmt.Errorf("store %s: the marker of repository %x does not open (is it the repository's store?): %w", r.cfg.Store.Describe(), id[:], err)
	}
	mo.Wipe()
	return nil
}

// headKeeper is a key source kept off this host that records the
// catalog's head at every commit (remote.Source).
type headKeeper interface {
	CatalogHead(ctx context.Context) (seq uint64, hash [32]byte, has bool, err error)
	RecordCatalogHead(ctx context.Context, seq uint64, hash [32]byte) error
}

// recordHeads makes every commit of the catalog report its head to the
// key source, if it keeps heads (a key server) and the catalog tells its
// commits. A report that fails is logged by the source's retries and
// made good by the next commit's (the server keeps the newest).
func (r *Repo) recordHeads() {
	hk, ok := r.kr.(headKeeper)
	if !ok {
		return
	}
	hn, ok := r.cat.(catalog.HeadNotifier)
	if !ok {
		return
	}
	hn.SetOnCommit(func(h catalog.Head) {
		if err := hk.RecordCatalogHead(context.Background(), h.Seq, h.Hash); err != nil {
			r.headErr.Store(&err)
		} else {
			r.headErr.Store(nil)
		}
	})
}

// HeadReportError is the error of the last report of the catalog's head
// to the key server, if it failed (nil: it was recorded, or there is no
// key server).
func (r *Repo) HeadReportError() error {
	if p := r.headErr.Load(); p != nil {
		return *p
	}
	return nil
}

// checkCatalogHead refuses a catalog that does not hold the newest head
// the key server recorded: its newest commit is older (rolled back), or
// the same commit has another hash (rolled back and written again).
func (r *Repo) checkCatalogHead(ctx context.Context) error {
	hk, ok := r.kr.(headKeeper)
	if !ok {
		return nil
	}
	seq, hash, has, err := hk.CatalogHead(ctx)
	if err != nil {
		return err
	}
	if !has {
		return nil
	}
	cur, err := r.cat.Head(ctx)
	if err != nil {
		return err
	}
	if cur.Seq < seq {
		return fmt.Errorf("%w: the key server records catalog commit %d, but this catalog's newest is %d: it was put back to an older copy (restore the newest catalog, or recover on premises, and find out who restored it)",
			ErrCatalogRolledBack, seq, cur.Seq)
	}
	h, ok, err := r.cat.HeadAt(ctx, seq)
	if err != nil {
		return err
	}
	if ok && h != hash {
		return fmt.Errorf("%w: the key server records catalog commit %d with another hash than this catalog's: it was put back to an older copy and written again",
			ErrCatalogRolledBack, seq)
	}
	return nil
}
