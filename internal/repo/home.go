package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	s3store "github.com/holdfast/holdfast/internal/store/s3"
)

// Files in a home directory.
const (
	ConfigFile  = "config.json"
	KeyringFile = "keyring"
	CatalogFile = "catalog.db"
	StoreDir    = "store"
)

// DefaultHome returns $HOLDFAST_HOME, or "holdfast" under the user's
// configuration directory.
func DefaultHome() (string, error) {
	if h := os.Getenv("HOLDFAST_HOME"); h != "" {
		return filepath.Abs(h)
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding a home directory: %w (set HOLDFAST_HOME)", err)
	}
	return filepath.Join(d, "holdfast"), nil
}

// Config is the home's config.json.
type Config struct {
	Version    int         `json:"version"`
	Repository string      `json:"repository"`
	Store      StoreConfig `json:"store"`
	// Backup is when commands write catalog backups; nil means the
	// defaults (DefaultBackupConfig). Init writes the defaults out.
	Backup *BackupConfig `json:"backup,omitempty"`
	// Uploads tunes multipart uploads; nil means the defaults.
	Uploads *UploadsConfig `json:"uploads,omitempty"`
	// Catalog is where the catalog is kept; nil means HOME/catalog.db
	// (catalogcfg.go).
	Catalog *CatalogConfig `json:"catalog,omitempty"`
}

// StoreConfig says which store holds the repository. It holds no secret:
// S3 credentials come from the standard AWS chain.
type StoreConfig struct {
	Type   string        `json:"type"` // "local", "s3" or "spread"
	Path   string        `json:"path,omitempty"`
	S3     *S3Config     `json:"s3,omitempty"`
	Spread *SpreadConfig `json:"spread,omitempty"` // see spread.go
}

// S3Config is the S3 store's part of the config (see internal/store/s3).
type S3Config struct {
	Bucket      string   `json:"bucket"`
	Prefix      string   `json:"prefix,omitempty"`
	Endpoint    string   `json:"endpoint,omitempty"`
	Region      string   `json:"region,omitempty"`
	PathStyle   bool     `json:"path_style,omitempty"`
	AllowHTTP   bool     `json:"allow_http,omitempty"`
	AllowTLS12  bool     `json:"allow_tls12,omitempty"`
	CABundle    string   `json:"ca_bundle,omitempty"`
	PinSPKI     []string `json:"pin_spki,omitempty"`
	PartSize    int64    `json:"part_size,omitempty"`
	Concurrency int      `json:"concurrency,omitempty"`
	// Faults: zero takes the store's default (see internal/store/s3).
	MaxAttempts int      `json:"max_attempts,omitempty"`
	MaxBackoff  Duration `json:"max_backoff,omitempty"`
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	Timeout     Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration that config.json holds as text ("30s").
type Duration time.Duration

// MarshalJSON writes d as text, "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads text as time.ParseDuration does.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Describe names the store for people (no credentials are ever in it).
func (c StoreConfig) Describe() string {
	if c.Type == "s3" && c.S3 != nil {
		return "s3://" + c.S3.Bucket + "/" + c.S3.Prefix
	}
	if c.Type == "spread" {
		return c.Spread.describe()
	}
	return c.Path
}

func loadConfig(home string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(home, ConfigFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c, fmt.Errorf("no repository at %q: %w", home, ErrNotFound)
		}
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("reading %q: %w", filepath.Join(home, ConfigFile), err)
	}
	if c.Version != 1 {
		return c, fmt.Errorf("%q: unsupported config version %d", filepath.Join(home, ConfigFile), c.Version)
	}
	return c, nil
}

func saveConfig(home string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(home, ConfigFile), append(b, '\n'), atomicfile.Options{Mode: 0o600})
}

func openStore(ctx context.Context, c StoreConfig, hooks *Hooks) (store.Store, error) {
	switch c.Type {
	case "s3":
		if c.S3 == nil {
			return nil, errors.New("config: s3 store without its settings")
		}
		x := c.S3
		return s3store.New(ctx, s3store.Config{Bucket: x.Bucket, Prefix: x.Prefix, Endpoint: x.Endpoint, Region: x.Region,
			PathStyle: x.PathStyle, AllowHTTP: x.AllowHTTP, AllowTLS12: x.AllowTLS12, CABundle: x.CABundle, PinSPKI: x.PinSPKI,
			PartSize: x.PartSize, Concurrency: x.Concurrency, MaxAttempts: x.MaxAttempts, MaxBackoff: time.Duration(x.MaxBackoff),
			IdleTimeout: time.Duration(x.IdleTimeout), Timeout: time.Duration(x.Timeout)})
	case "local":
		var opt local.Options
		if hooks != nil {
			opt.TestHookBeforeRename = hooks.BeforeRename
		}
		return local.OpenWithOptions(c.Path, opt)
	case "spread":
		return openSpreadProbe(ctx, c.Spread) // keyed by keyStore, openStoreKeyed
	}
	return nil, fmt.Errorf("unknown store type %q", c.Type)
}

// Hooks are test hooks; production code never sets them.
type Hooks struct {
	// WrapStore wraps the store (fault injection, byte counting).
	WrapStore func(store.Store) store.Store
	// BeforeRename is passed to the local store.
	BeforeRename func(name string)
	// At is called at named points of a write (see the crash tests).
	At func(point string)
	// Now replaces the clock that MaybeBackup's interval is measured by.
	Now func() time.Time
	// PostureChecked is called after each posture re-check a long-running
	// command makes on SIGHUP (cmd/holdfast), with its outcome.
	PostureChecked func(err error)
}

func (h *Hooks) at(p string) {
	if h != nil && h.At != nil {
		h.At(p)
	}
}

func (h *Hooks) now() time.Time {
	if h != nil && h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Repo is an open repository.
type Repo struct {
	Home  string
	cfg   Config
	id    keys.ID
	kr    RootKeys // the keyring, or another source (keysource.go)
	src   keys.Source
	cat   catalog.Catalog
	st    store.Store
	hooks *Hooks

	mu     sync.Mutex
	bkeys  map[bkRef]secret.Key
	sealed bool // see SealKeys

	auto *autoBackup // see AutoBackup

	uses keyUseCounters // see KeyUseCounts

	headErr atomic.Pointer[error] // see HeadReportError

	pins readPins       // see retire
	bg   sync.WaitGroup // removals started by readers' Close (unpin)
}

type bkRef struct {
	bucket  keys.ID
	version uint32
}

// ID returns the repository id.
func (r *Repo) ID() keys.ID { return r.id }

// KeySource is the source of the repository's root keys (the keyring),
// for what else the root keys protect (the gateway's access table).
func (r *Repo) KeySource() keys.Source { return r.src }

// Store returns the repository's store (for verify and tests).
func (r *Repo) Store() store.Store { return r.st }

// StoreStats returns the store's request and retry counts, if it keeps
// them (store.StatsReporter: the S3 store does, the local one does not).
func (r *Repo) StoreStats() (store.Stats, bool) {
	if sr, ok := r.st.(store.StatsReporter); ok {
		return sr.Stats(), true
	}
	return store.Stats{}, false
}

// Catalog returns the repository's catalog.
func (r *Repo) Catalog() catalog.Catalog { return r.cat }

// Close releases everything and wipes keys. With AutoBackup set it first
// writes a catalog backup if one is due.
func (r *Repo) Close() error {
	r.stopRemovals()
	r.runAutoBackup()
	r.mu.Lock()
	for k, v := range r.bkeys {
		v.Wipe()
		delete(r.bkeys, k)
	}
	r.mu.Unlock()
	var errs []error
	if r.cat != nil {
		errs = append(errs, r.cat.Close())
	}
	if r.st != nil {
		errs = append(errs, r.st.Close())
	}
	if r.kr != nil {
		r.kr.Close()
	}
	return errors.Join(errs...)
}

// InitOptions configure a new repository.
type InitOptions struct {
	Home       string
	StorePath  string        // local store directory; default: Home/store
	S3         *S3Config     // an S3 store instead
	Spread     *SpreadConfig // a spread store instead (spread.go)
	Passphrase []byte
	KDF        keyring.Params
	// Keys, if set, is the new repository's key source, already made
	// (a PKCS#11 token after a key ceremony, keysource.go): no keyring is
	// created and the repository takes Keys' id. The Repo closes it; on
	// failure the caller closes it (Close is idempotent).
	Keys RootKeys
	// Catalog, if set, keeps the catalog on PostgreSQL instead of
	// HOME/catalog.db; the database must hold no repository yet.
	Catalog *CatalogConfig
	Hooks   *Hooks
}

// CheckNewHome fails with ErrExists if home already holds a repository,
// or a keyring or catalog of one: what Init refuses, checked before
// anything is asked or computed for a new one.
func CheckNewHome(home string) error {
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); err == nil {
		return fmt.Errorf("a repository already exists at %q: %w", home, ErrExists)
	}
	for _, f := range []string{KeyringFile, CatalogFile, CatalogFile + "-wal"} {
		if _, err := os.Stat(filepath.Join(home, f)); err == nil {
			return fmt.Errorf("%q already exists; init makes a new repository only in a home without one (to rebuild a lost catalog with its keyring, use recover): %w", filepath.Join(home, f), ErrExists)
		}
	}
	return nil
}

// Init creates a home and a repository in an empty store (or one holding
// no repository marker). It refuses an existing home and a store that
// holds another repository.
func Init(ctx context.Context, o InitOptions) (_ *Repo, err error) {
	if err := CheckNewHome(o.Home); err != nil {
		return nil, err
	}
	// A key server that already records a catalog's head serves a
	// repository that has one: a new catalog for it would fork it.
	if hk, ok := o.Keys.(headKeeper); ok {
		seq, _, has, err := hk.CatalogHead(ctx)
		if err != nil {
			return nil, err
		}
		if has {
			id := o.Keys.Repo()
			return nil, fmt.Errorf("the key server already records a catalog of repository %x (at commit %d): another home for it attaches to that catalog (keyserver join --attach with the shared catalog), it does not create a second one: %w", id[:], seq, ErrOtherRepository)
		}
	}
	if err := os.MkdirAll(o.Home, 0o700); err != nil {
		return nil, err
	}
	var sc StoreConfig
	if o.S3 != nil {
		sc = StoreConfig{Type: "s3", S3: o.S3}
	} else if o.Spread != nil {
		sc = StoreConfig{Type: "spread", Spread: o.Spread}
	} else {
		sp := o.StorePath
		if sp == "" {
			sp = filepath.Join(o.Home, StoreDir)
		}
		if sp, err = filepath.Abs(sp); err != nil {
			return nil, err
		}
		sc = StoreConfig{Type: "local", Path: sp}
	}
	st, err := openStore(ctx, sc, o.Hooks)
	if err != nil {
		return nil, err
	}
	if o.Hooks != nil && o.Hooks.WrapStore != nil {
		st = o.Hooks.WrapStore(st)
	}
	var found []string
	if err := st.List(ctx, format.MarkerPrefix, func(oi store.ObjectInfo) error {
		found = append(found, oi.Name)
		return nil
	}); err != nil {
		st.Close()
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	if len(found) > 0 {
		st.Close()
		return nil, fmt.Errorf("store %q holds repository %s: %w", sc.Describe(), found[0][len(format.MarkerPrefix):], ErrOtherRepository)
	}
	var id keys.ID
	if _, err := rand.Read(id[:]); err != nil {
		st.Close()
		return nil, err
	}
	if o.Keys != nil {
		id = o.Keys.Repo()
	}
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				os.Remove(p)
			}
		}
	}()
	kr, made, err := initRootKeys(o, id)
	if err != nil {
		st.Close()
		return nil, err
	}
	created = append(created, made...)
	if st, err = keyStoreFor(ctx, o.Home, sc, st, kr, o.Hooks); err != nil {
		kr.Close()
		return nil, err
	}
	var cc *CatalogConfig
	if o.Catalog != nil {
		if cc, err = o.Catalog.absolute(); err != nil {
			kr.Close()
			st.Close()
			return nil, err
		}
	}
	cat, err := openCatalog(ctx, o.Home, cc)
	if err != nil {
		kr.Close()
		st.Close()
		return nil, err
	}
	if cc == nil {
		cp := filepath.Join(o.Home, CatalogFile)
		created = append(created, cp, cp+"-wal", cp+"-shm")
	} else if got, gerr := cat.GetMeta(ctx, "repo-id"); gerr == nil {
		cat.Close()
		kr.Close()
		st.Close()
		return nil, fmt.Errorf("the catalog %s already holds repository %x (a further gateway attaches to it: keyserver join --attach): %w", cc.Describe(), got, ErrOtherRepository)
	} else if !errors.Is(gerr, catalog.ErrNotFound) {
		cat.Close()
		kr.Close()
		st.Close()
		return nil, gerr
	}
	bc := DefaultBackupConfig
	r := &Repo{Home: o.Home, cfg: Config{Version: 1, Repository: hex.EncodeToString(id[:]), Store: sc, Backup: &bc, Catalog: cc},
		id: id, kr: kr, src: kr, cat: cat, st: st, hooks: o.Hooks, bkeys: map[bkRef]secret.Key{}}
	r.recordHeads()
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err = cat.SetMeta(ctx, "repo-id", id[:]); err != nil {
		return nil, err
	}
	if err = r.writeMarker(ctx); err != nil {
		return nil, err
	}
	// The first catalog backup, recorded in the keyring: from now on the
	// keyring can tell a rolled-back store (docs/design.md §9).
	var first *BackupResult
	if first, err = r.Backup(ctx); err == nil {
		err = saveConfig(o.Home, r.cfg)
	}
	if err != nil {
		// Without its keyring the marker would block every later init.
		_ = st.Delete(context.WithoutCancel(ctx), format.MarkerName(id))
		if first != nil {
			_ = st.Delete(context.WithoutCancel(ctx), first.Object)
		}
		return nil, err
	}
	return r, nil
}

// KeyringPath is the path of the keyring file in home.
func KeyringPath(home string) string { return filepath.Join(home, KeyringFile) }

// OpenOptions configure Open.
type OpenOptions struct {
	Home       string
	Passphrase []byte
	// Keyring, if set, is the home's keyring already open (from an
	// unlocked session, see keyring.OpenSession); Passphrase is then not
	// used. Open takes it over: it is closed with the Repo, or on failure.
	Keyring *keyring.Keyring
	// Keys, if set, is the home's key source already open (a PKCS#11
	// token, keysource.go); Passphrase and Keyring are then not used. Open
	// takes it over like Keyring.
	Keys  RootKeys
	Hooks *Hooks
}

// Open opens an existing repository.
func Open(ctx context.Context, o OpenOptions) (*Repo, error) {
	cfg, err := loadConfig(o.Home)
	if err != nil {
		if o.Keyring != nil {
			o.Keyring.Close()
		}
		if o.Keys != nil {
			o.Keys.Close()
		}
		return nil, err
	}
	kr, err := openRootKeys(o.Home, o.Keys, o.Keyring, o.Passphrase)
	if err != nil {
		return nil, err
	}
	r, err := openWith(ctx, o.Home, cfg, kr, o.Hooks)
	if err != nil {
		kr.Close()
		return nil, err
	}
	want, _ := hex.DecodeString(cfg.Repository)
	if got, err := r.cat.GetMeta(ctx, "repo-id"); err != nil || string(got) != string(want) || string(want) != string(r.id[:]) {
		r.Close()
		return nil, fmt.Errorf("home %q: the config, keyring and catalog name different repositories", o.Home)
	}
	if err := r.checkCatalogFresh(ctx); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.checkCatalogHead(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func openWith(ctx context.Context, home string, cfg Config, kr RootKeys, hooks *Hooks) (*Repo, error) {
	// An existing repository's store must be there: a missing directory is
	// an unmounted disk, not an empty store (which would look as if the
	// provider had deleted everything).
	if cfg.Store.Type == "local" {
		if fi, err := os.Stat(cfg.Store.Path); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("store %q is not reachable: %w", cfg.Store.Path, ErrStoreUnavailable)
		}
	}
	st, err := openStoreFor(ctx, home, cfg.Store, kr, hooks)
	if err != nil {
		return nil, err
	}
	if hooks != nil && hooks.WrapStore != nil {
		st = hooks.WrapStore(st)
	}
	cat, err := openCatalog(ctx, home, cfg.Catalog)
	if err != nil {
		st.Close()
		return nil, err
	}
	r := &Repo{Home: home, cfg: cfg, id: kr.Repo(), kr: kr, src: kr, cat: cat, st: st, hooks: hooks,
		bkeys: map[bkRef]secret.Key{}}
	r.recordHeads()
	return r, nil
}

// StoreDescription names the repository's store for people.
func (r *Repo) StoreDescription() string { return r.cfg.Store.Describe() }
