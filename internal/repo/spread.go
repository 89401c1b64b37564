package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	"github.com/holdfast/holdfast/internal/store/spread"
)

// Files of a spread repository's home.
const (
	// SpreadQueueFile is the spread store's repair queue.
	SpreadQueueFile = "spread-repair"
	// spreadSpoolDir holds, unlinked, bodies of unknown size being spread.
	spreadSpoolDir = "spread-spool"
	// spreadKeyPurpose names the key the spread store's member names and
	// stripe tags derive from (keyring.DeriveKey).
	spreadKeyPurpose = "spread-store"
)

// SpreadConfig is a spread store's part of the config: K data and M
// parity shards over K+M members (docs/spread.md).
type SpreadConfig struct {
	K int `json:"k"`
	M int `json:"m"`
	// Chunk is the shard length of a full stripe; 0 means the default
	// (64 KiB). It cannot change once objects are stored.
	Chunk int64 `json:"chunk,omitempty"`
	// KeyVersion is the root key version the spread key derives from; init
	// sets it to the primary version. Destroying that version makes the
	// spread store unreadable.
	KeyVersion uint32         `json:"key_version,omitempty"`
	Members    []SpreadMember `json:"members"`
}

// SpreadMember is one member: where it is (a local directory or an S3
// bucket), and who holds it under which law.
type SpreadMember struct {
	Label        string    `json:"label"`
	Provider     string    `json:"provider"`
	Jurisdiction string    `json:"jurisdiction"`
	Path         string    `json:"path,omitempty"`
	S3           *S3Config `json:"s3,omitempty"`
}

// Check validates c: each member is either a directory or a bucket, and
// the layout passes the jurisdiction policy (spread.CheckPolicy), whose
// refusal names the jurisdiction or provider at fault.
func (c *SpreadConfig) Check() error {
	if c == nil {
		return errors.New("config: spread store without its settings")
	}
	infos := make([]spread.MemberInfo, len(c.Members))
	for i, m := range c.Members {
		if (m.Path == "") == (m.S3 == nil) {
			return fmt.Errorf("spread member %q: give either a path or s3 settings", m.Label)
		}
		if m.S3 != nil && m.S3.Bucket == "" {
			return fmt.Errorf("spread member %q: s3 settings without a bucket", m.Label)
		}
		infos[i] = spread.MemberInfo{Label: m.Label, Provider: m.Provider, Jurisdiction: m.Jurisdiction}
	}
	return spread.CheckPolicy(c.K, c.M, infos)
}

// describe names a spread store for people: "spread 3-of-5: label (s3://…), …".
func (c *SpreadConfig) describe() string {
	if c == nil {
		return "spread"
	}
	var ms []string
	for _, m := range c.Members {
		ms = append(ms, m.Label+" "+StoreConfig{Type: memberType(m), Path: m.Path, S3: m.S3}.Describe())
	}
	return fmt.Sprintf("spread %d-of-%d [%s]", c.K, c.K+c.M, strings.Join(ms, ", "))
}

func memberType(m SpreadMember) string {
	if m.S3 != nil {
		return "s3"
	}
	return "local"
}

// spreadWarn is told of every member a spread store finds unreachable or
// holding a damaged or missing shard (SetSpreadWarn).
var spreadWarn atomic.Pointer[func(spread.Problem)]

// SetSpreadWarn sets what is told of every member a spread store finds
// unreachable or holding a damaged or missing shard; by default a line
// on standard error. The object is queued for `holdfast repair` either
// way. Safe to call while stores are in use.
func SetSpreadWarn(f func(spread.Problem)) { spreadWarn.Store(&f) }

func warnSpread(p spread.Problem) {
	if f := spreadWarn.Load(); f != nil {
		(*f)(p)
		return
	}
	fmt.Fprintf(os.Stderr, "holdfast: warning: spread store: %s (queued for holdfast repair)\n", p)
}

// openStoreKeyed opens the store of an existing repository: a spread
// store needs the keyring for its key, the others do not.
func openStoreKeyed(ctx context.Context, home string, c StoreConfig, kr *keyring.Keyring, hooks *Hooks) (store.Store, error) {
	if c.Type != "spread" {
		return openStore(ctx, c, hooks)
	}
	return openSpread(ctx, home, c.Spread, kr, true)
}

// keyStore replaces, in init, the key-less store that checked a new
// spread repository's members with the working one, now that the keyring
// exists. It records the root key version the spread key derives from.
// Other stores are returned as they are. st is closed either way.
func keyStore(ctx context.Context, home string, sc StoreConfig, st store.Store, kr *keyring.Keyring, hooks *Hooks) (store.Store, error) {
	if sc.Type != "spread" {
		return st, nil
	}
	st.Close()
	sc.Spread.KeyVersion = kr.Primary()
	s, err := openSpread(ctx, home, sc.Spread, kr, false)
	if err != nil {
		return nil, err
	}
	if hooks != nil && hooks.WrapStore != nil {
		return hooks.WrapStore(s), nil
	}
	return s, nil
}

// openSpread opens each member and the spread store over them. With
// existing set, a member directory that is missing is an unmounted disk:
// that member is down (reads go to the others, repair fills it once it
// is back), never silently replaced by an empty directory.
func openSpread(ctx context.Context, home string, c *SpreadConfig, kr *keyring.Keyring, existing bool) (store.Store, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	ver := c.KeyVersion
	if ver == 0 {
		ver = 1
	}
	key, err := kr.DeriveKey(ver, spreadKeyPurpose)
	if err != nil {
		return nil, fmt.Errorf("spread store key: %w", err)
	}
	defer key.Wipe()
	members, err := openMembers(ctx, c, existing)
	if err != nil {
		return nil, err
	}
	s, err := spread.New(spread.Config{K: c.K, M: c.M, Chunk: c.Chunk, Members: members, Key: key,
		Replicate: []string{format.MarkerPrefix}, SpoolDir: filepath.Join(home, spreadSpoolDir),
		Queue: filepath.Join(home, SpreadQueueFile), Warn: warnSpread})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openMembers(ctx context.Context, c *SpreadConfig, existing bool) ([]spread.Member, error) {
	var out []spread.Member
	fail := func(err error) ([]spread.Member, error) {
		for _, m := range out {
			m.Store.Close()
		}
		return nil, err
	}
	for _, m := range c.Members {
		info := spread.MemberInfo{Label: m.Label, Provider: m.Provider, Jurisdiction: m.Jurisdiction}
		var st store.Store
		var err error
		switch {
		case m.S3 != nil:
			st, err = openStore(ctx, StoreConfig{Type: "s3", S3: m.S3}, nil)
		case existing && !isDir(m.Path):
			st = downStore{fmt.Errorf("member %s: directory %q is not there (unmounted?): %w", m.Label, m.Path, store.ErrUnavailable)}
		default:
			st, err = local.Open(m.Path)
		}
		if err != nil {
			return fail(fmt.Errorf("spread member %s: %w", m.Label, err))
		}
		out = append(out, spread.Member{MemberInfo: info, Store: st})
	}
	return out, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// downStore is a member that cannot be reached: every call fails.
type downStore struct{ err error }

func (d downStore) Put(context.Context, string, io.Reader, int64) error { return d.err }
func (d downStore) ReadRange(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, d.err
}
func (d downStore) Stat(context.Context, string) (store.ObjectInfo, error) {
	return store.ObjectInfo{}, d.err
}
func (d downStore) Delete(context.Context, string) error { return d.err }
func (d downStore) List(context.Context, string, func(store.ObjectInfo) error) error {
	return d.err
}
func (d downStore) Close() error { return nil }

// openSpreadProbe is what init opens for a new spread repository before
// its keyring exists: it checks the layout, opens every member, and
// offers only List, which refuses a member that holds anything — a new
// spread repository starts on empty members.
func openSpreadProbe(ctx context.Context, c *SpreadConfig) (store.Store, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	members, err := openMembers(ctx, c, false)
	if err != nil {
		return nil, err
	}
	return &spreadProbe{members: members}, nil
}

type spreadProbe struct{ members []spread.Member }

var errProbe = errors.New("spread store is not open yet (no key)")

func (p *spreadProbe) Put(context.Context, string, io.Reader, int64) error { return errProbe }
func (p *spreadProbe) ReadRange(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, errProbe
}
func (p *spreadProbe) Stat(context.Context, string) (store.ObjectInfo, error) {
	return store.ObjectInfo{}, errProbe
}
func (p *spreadProbe) Delete(context.Context, string) error { return errProbe }

func (p *spreadProbe) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	for _, m := range p.members {
		n := 0
		if err := m.Store.List(ctx, "", func(store.ObjectInfo) error { n++; return nil }); err != nil {
			return fmt.Errorf("spread member %s: %w", m.Label, err)
		}
		if n > 0 {
			return fmt.Errorf("spread member %s holds %s object(s); a new spread repository needs empty members: %w",
				m.Label, strconv.Itoa(n), ErrOtherRepository)
		}
	}
	return nil
}

func (p *spreadProbe) Close() error {
	var errs []error
	for _, m := range p.members {
		errs = append(errs, m.Store.Close())
	}
	return errors.Join(errs...)
}

// Spread returns the repository's spread store, if it has one (for
// `holdfast stores` and `holdfast repair`).
func (r *Repo) Spread() (*spread.Store, bool) {
	s, ok := r.st.(*spread.Store)
	return s, ok
}

// SpreadConfig returns the spread store's configuration, or nil.
func (r *Repo) SpreadConfig() *SpreadConfig { return r.cfg.Store.Spread }
