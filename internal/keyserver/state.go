package keyserver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keyserver/api"
)

// Files of the state directory (docs/keyserver.md, "State directory").
// Everything the key server is lives here: back up the directory whole.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	ClientsFile    = "clients.json"
	KeyringFile    = "keyring"
	// TokenFile names the PKCS#11 token holding the root keys, in a state
	// directory made from a token's home (InitOptions.FromToken); the
	// token's sealed state is in TokenStateFile. Neither holds a key.
	TokenFile      = "keysource.json"
	TokenStateFile = "pkcs11-state"
	ConfigFile     = "keyserver.json" // the repository id and the certificate's hosts: no secret
	lockFile       = "clients.json.lock"
)

// Files of a client bundle (keyserver enroll --out DIR).
const (
	BundleCert = "client.crt"
	BundleKey  = "client.key"
	BundleCA   = "ca.crt"
)

var (
	// ErrExists: the state directory, or a client of that name, exists.
	ErrExists = errors.New("already exists")
	// ErrNoClient: no enrolled client of that name.
	ErrNoClient = errors.New("no such client")
)

// Grant is what one client may do (clients.json).
type Grant struct {
	// Buckets are bucket ids in hex (Enroll writes lower case; either
	// case matches), or "*" for every bucket and the repository's system
	// objects (marker, key journal, catalog backups; the audit log's key
	// needs api.OpAudit too).
	Buckets []string `json:"buckets"`
	// Ops are api.OpWrap, api.OpUnwrap, api.OpData, api.OpAudit.
	Ops []string `json:"ops"`
	// Versions are the root key versions it may use; empty means all.
	Versions []uint32 `json:"versions,omitempty"`
}

// Client is one enrolled certificate.
type Client struct {
	Name    string     `json:"name"`
	Serial  string     `json:"serial"` // the certificate's serial, hex
	Grant   Grant      `json:"grant"`
	Issued  time.Time  `json:"issued"`
	Expires time.Time  `json:"expires"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

type clientsFile struct {
	Version int      `json:"version"`
	Clients []Client `json:"clients"`
}

// Validate checks a grant's spelling.
func (g Grant) Validate() error {
	if len(g.Buckets) == 0 {
		return errors.New("a grant needs at least one bucket id (or \"*\")")
	}
	for _, b := range g.Buckets {
		if b == "*" {
			continue
		}
		if id, err := hex.DecodeString(b); err != nil || len(id) != len(keys.ID{}) {
			return fmt.Errorf("bucket %q is not a bucket id (32 hex digits) or \"*\"", b)
		}
	}
	if len(g.Ops) == 0 {
		return errors.New("a grant needs at least one operation")
	}
	for _, o := range g.Ops {
		if o != api.OpWrap && o != api.OpUnwrap && o != api.OpData && o != api.OpAudit {
			return fmt.Errorf("operation %q is not one of wrap, unwrap, data, audit", o)
		}
	}
	return nil
}

// Dir is a key server's state directory.
type Dir string

func (d Dir) path(f string) string { return filepath.Join(string(d), f) }

// LogPath is the key-operation log of the directory.
func (d Dir) LogPath() string { return oplog.Path(string(d)) }

// InitOptions make a state directory.
type InitOptions struct {
	// Hosts are the server certificate's DNS names and IP addresses.
	Hosts []string
	// FromKeyring, if set, is an existing keyring file (a repository
	// home's) copied into the directory: the server then holds that
	// repository's root keys. Otherwise a new keyring (new repository
	// id) is made, sealed under Passphrase with KDF.
	FromKeyring string
	Passphrase  []byte
	KDF         keyring.Params
	// FromToken, if set, is a repository whose root keys are in a PKCS#11
	// token (made by 'holdfast keys ceremony'), already open: its sealed
	// state file is copied in and the token named in TokenFile, and the
	// server uses the token from then on (its keys never leave it).
	FromToken *TokenSource
	// AuditCheckpoints is where the audit log's checkpoints are copied
	// (default audit.DefaultCheckpoints(dir): beside the audit directory;
	// another machine's mount is better, docs/audit.md).
	AuditCheckpoints string
}

// Init makes a new state directory: a CA, a server certificate, an empty
// client list, the root keys, the audit log (K_0 sealed under the root
// keys), and the first log record. It refuses a directory that already
// holds a key server.
func Init(dir string, o InitOptions) (keys.ID, error) {
	d := Dir(dir)
	if len(o.Hosts) == 0 {
		return keys.ID{}, errors.New("the server certificate needs at least one host name or address")
	}
	if _, err := os.Stat(d.path(CAKeyFile)); err == nil {
		return keys.ID{}, fmt.Errorf("%q holds a key server: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return keys.ID{}, err
	}
	if err := oplog.New(d.LogPath()).Ready(); err != nil {
		return keys.ID{}, fmt.Errorf("the key-operation log cannot take a record, so nothing was done: %w", err)
	}
	var kr RootKeys
	if o.FromToken != nil {
		if err := initToken(d, *o.FromToken); err != nil {
			return keys.ID{}, err
		}
		kr = o.FromToken.Keys // the caller's, closed by the caller
	} else {
		k, err := initKeyring(d, o)
		if err != nil {
			return keys.ID{}, err
		}
		defer k.Close()
		kr = k
	}
	repo := kr.Repo()
	if err := initPKI(d, repo, o.Hosts); err != nil {
		os.Remove(d.path(KeyringFile))
		os.Remove(d.path(TokenFile))
		os.Remove(d.path(TokenStateFile))
		return keys.ID{}, err
	}
	if err := createAudit(d, kr, o.AuditCheckpoints); err != nil {
		return repo, fmt.Errorf("the key server was made but its audit log was not (run 'holdfast keyserver audit-init'): %w", err)
	}
	detail := "key server initialised; server certificate for " + strings.Join(o.Hosts, ",")
	if o.FromKeyring != "" {
		detail += "; root keys copied from " + o.FromKeyring
	}
	if o.FromToken != nil {
		detail += "; root keys in the PKCS#11 token " + o.FromToken.URI
	}
	return repo, d.record("keyserver-init", detail)
}

// initKeyring makes the directory's keyring (or copies FromKeyring) and
// returns it open; the caller closes it.
func initKeyring(d Dir, o InitOptions) (*keyring.Keyring, error) {
	dst := d.path(KeyringFile)
	if o.FromKeyring != "" {
		// Open it first: a wrong passphrase or a damaged file stops here.
		kr, err := keyring.Open(o.FromKeyring, o.Passphrase)
		if err != nil {
			return nil, err
		}
		if err := copyFile(o.FromKeyring, dst); err != nil {
			kr.Close()
			return nil, err
		}
		return kr, nil
	}
	var id keys.ID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return keyring.Create(dst, o.Passphrase, id, o.KDF)
}

func copyFile(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicfile.Write(dst, atomicfile.Options{Mode: 0o600, NoReplace: true}, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
}

// Config is keyserver.json: what the directory serves, for people and
// for the log; the keyring, sealed, is the authority.
type Config struct {
	Version int      `json:"version"`
	Repo    keys.ID  `json:"repo"`
	Hosts   []string `json:"hosts"`
}

// Config reads keyserver.json.
func (d Dir) Config() (Config, error) {
	var c Config
	b, err := os.ReadFile(d.path(ConfigFile))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("reading %q: %w", d.path(ConfigFile), err)
	}
	return c, nil
}

func initPKI(d Dir, repo keys.ID, hosts []string) error {
	c, err := newCA("holdfast key server CA")
	if err != nil {
		return err
	}
	srv, err := c.issue("holdfast key server", hosts, true)
	if err != nil {
		return err
	}
	ckey, err := c.keyPEM()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{CACertFile, c.certPEM()}, {ServerCertFile, srv.certPEM}, {ServerKeyFile, srv.keyPEM},
		{ClientsFile, mustJSON(clientsFile{Version: 1, Clients: []Client{}})},
		{ConfigFile, mustJSON(Config{Version: 1, Repo: repo, Hosts: hosts})},
		{CAKeyFile, ckey}, // last: its presence marks a finished directory
	}
	for _, f := range files {
		if err := atomicfile.WriteFile(d.path(f.name), f.data, atomicfile.Options{Mode: 0o600, NoReplace: true}); err != nil {
			return fmt.Errorf("writing %q: %w", d.path(f.name), err)
		}
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only fixed, well-formed types are passed
	}
	return append(b, '\n')
}

// withClients runs fn on the client list under an exclusive lock and
// writes it back if fn changed it (returns true).
func (d Dir) withClients(fn func(*clientsFile) (bool, error)) error {
	lf, err := os.OpenFile(d.path(lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	cf, err := readClients(d.path(ClientsFile))
	if err != nil {
		return err
	}
	changed, err := fn(&cf)
	if err != nil || !changed {
		return err
	}
	return atomicfile.WriteFile(d.path(ClientsFile), mustJSON(cf), atomicfile.Options{Mode: 0o600})
}

func readClients(p string) (clientsFile, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return clientsFile{}, err
	}
	var cf clientsFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return cf, fmt.Errorf("reading %q: %w", p, err)
	}
	if cf.Version != 1 {
		return cf, fmt.Errorf("%q: unsupported version %d", p, cf.Version)
	}
	return cf, nil
}

// Clients lists the enrolled certificates, revoked ones too.
func (d Dir) Clients() ([]Client, error) {
	cf, err := readClients(d.path(ClientsFile))
	return cf.Clients, err
}

// Enroll issues a client certificate for name with grant g and writes the
// bundle (client.key, client.crt, ca.crt; mode 0600) into out, which must
// not hold one. A name with a live certificate is refused: revoke it first.
func (d Dir) Enroll(name string, g Grant, out string) (Client, error) {
	if name == "" || strings.ContainsAny(name, " \t\n/=,") {
		return Client{}, fmt.Errorf("client name %q: use letters, digits, '-', '_' or '.'", name)
	}
	if err := g.Validate(); err != nil {
		return Client{}, err
	}
	g.Buckets = slices.Clone(g.Buckets)
	for i, b := range g.Buckets {
		g.Buckets[i] = strings.ToLower(b)
	}
	c, err := loadCA(d.path(CACertFile), d.path(CAKeyFile))
	if err != nil {
		return Client{}, err
	}
	var cl Client
	err = d.withClients(func(cf *clientsFile) (bool, error) {
		for _, x := range cf.Clients {
			if x.Name == name && x.Revoked == nil {
				return false, fmt.Errorf("client %q is enrolled (serial %s): %w; revoke it first", name, x.Serial, ErrExists)
			}
		}
		is, err := c.issue(name, nil, false)
		if err != nil {
			return false, err
		}
		if err := writeBundle(out, is, c.certPEM()); err != nil {
			return false, err
		}
		cl = Client{Name: name, Serial: is.serial, Grant: g, Issued: time.Now().UTC().Truncate(time.Second), Expires: is.expires.UTC()}
		cf.Clients = append(cf.Clients, cl)
		return true, nil
	})
	if err != nil {
		return Client{}, err
	}
	return cl, d.record("enroll", fmt.Sprintf("client %q serial %s buckets=%s ops=%s versions=%s", name, cl.Serial,
		strings.Join(g.Buckets, ","), strings.Join(g.Ops, ","), versionsString(g.Versions)))
}

func writeBundle(out string, is issued, caPEM []byte) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{BundleKey, is.keyPEM}, {BundleCert, is.certPEM}, {BundleCA, caPEM}} {
		if err := atomicfile.WriteFile(filepath.Join(out, f.name), f.data, atomicfile.Options{Mode: 0o600, NoReplace: true}); err != nil {
			return fmt.Errorf("writing the client bundle %q: %w", filepath.Join(out, f.name), err)
		}
	}
	return nil
}

// Revoke revokes every live certificate of name. A running server refuses
// it from its next connection on (it re-reads clients.json when it
// changes).
func (d Dir) Revoke(name string) ([]string, error) {
	var serials []string
	err := d.withClients(func(cf *clientsFile) (bool, error) {
		now := time.Now().UTC().Truncate(time.Second)
		for i, x := range cf.Clients {
			if x.Name == name && x.Revoked == nil {
				cf.Clients[i].Revoked = &now
				serials = append(serials, x.Serial)
			}
		}
		if len(serials) == 0 {
			return false, fmt.Errorf("%w with a live certificate: %q", ErrNoClient, name)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return serials, d.record("revoke", fmt.Sprintf("client %q serials %s", name, strings.Join(serials, ",")))
}

// record appends an administrative operation to the directory's
// key-operation log and to its audit log, if it keeps one.
func (d Dir) record(op, detail string) error {
	cfg, _ := d.Config() // an unreadable config still gets the record, without the id
	err := oplog.New(d.LogPath()).Record(keys.Op{Time: time.Now().UTC(), Op: op, Repo: cfg.Repo, Source: keys.SourceKeyServer, Detail: detail})
	return errors.Join(err, d.auditAdmin(op, detail))
}

func versionsString(vs []uint32) string {
	if len(vs) == 0 {
		return "all"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ",")
}

// allows reports whether the grant covers bucket id b ("*" covers all;
// the zero id, a system object's, only "*").
func (g Grant) allowsBucket(b keys.ID) bool {
	if slices.Contains(g.Buckets, "*") {
		return true
	}
	if b == (keys.ID{}) {
		return false
	}
	id := hex.EncodeToString(b[:])
	return slices.ContainsFunc(g.Buckets, func(x string) bool { return strings.EqualFold(x, id) })
}

func (g Grant) allowsOp(op string) bool { return slices.Contains(g.Ops, op) }

func (g Grant) allowsVersion(v uint32) bool {
	return len(g.Versions) == 0 || slices.Contains(g.Versions, v)
}

// TokenSource is a PKCS#11 token holding a repository's root keys, with
// the sealed state file its home keeps (internal/hsm).
type TokenSource struct {
	URI       string // the token's PKCS#11 URI (no PIN)
	StateFile string // the home's pkcs11-state, copied in
	Keys      RootKeys
}

// TokenConfig is TokenFile's content.
type TokenConfig struct {
	URI string `json:"uri"`
}

// Token returns the PKCS#11 token that holds the directory's root keys,
// or nil when they are in its keyring file.
func (d Dir) Token() (*TokenConfig, error) {
	b, err := os.ReadFile(d.path(TokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c TokenConfig
	if err := json.Unmarshal(b, &c); err != nil || c.URI == "" {
		return nil, fmt.Errorf("%s: not a token's configuration", d.path(TokenFile))
	}
	return &c, nil
}

// TokenStatePath is the token's sealed state in the directory.
func (d Dir) TokenStatePath() string { return d.path(TokenStateFile) }

func initToken(d Dir, t TokenSource) error {
	if t.Keys == nil || t.URI == "" || t.StateFile == "" {
		return errors.New("a token source needs its URI, its state file and its keys open")
	}
	if err := copyFile(t.StateFile, d.path(TokenStateFile)); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(d.path(TokenFile), mustJSON(TokenConfig{URI: t.URI}), atomicfile.Options{Mode: 0o600, NoReplace: true}); err != nil {
		os.Remove(d.path(TokenStateFile))
		return err
	}
	return nil
}
