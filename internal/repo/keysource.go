package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/store"
)

// RootKeys is what a repository needs of its root key source: the
// keys.Source that wraps bucket and system keys, the repository id, the
// root key versions, and the freshness record of the catalog backups
// (docs/design.md §9). The passphrase-sealed keyring (*keyring.Keyring)
// and the PKCS#11 source (*hsm.Source) implement it; errors follow the
// keyring's (keyring.ErrModified, keyring.ErrFreshnessRollback).
//
// Key-version commands (rotate, retire) reach the source's own methods by
// type assertion on Repo.RootKeys().
type RootKeys interface {
	keys.Source
	Repo() keys.ID
	Versions() []keyring.RootKeyInfo
	Freshness() (keyring.Freshness, bool)
	SetFreshness(keyring.Freshness) error
	Reload() error
	Close() error
}

var (
	_ RootKeys = (*keyring.Keyring)(nil)
	// ErrKeySourceNeeded: the home names a key source other than the
	// keyring file (a PKCS#11 token); the caller must open it (with its
	// PIN) and pass it in OpenOptions.Keys / RecoverOptions.Keys.
	ErrKeySourceNeeded = errors.New("this repository's root keys are held by another key source")
)

// Files of a home whose root keys are in a PKCS#11 token.
const (
	// KeySourceFile names the key source when it is not the keyring file.
	KeySourceFile = "keysource.json"
	// PKCS11StateFile is the PKCS#11 source's sealed state (internal/hsm).
	PKCS11StateFile = "pkcs11-state"
)

// Key source types of keysource.json.
const (
	KeySourcePKCS11    = "pkcs11"
	KeySourceKeyServer = "keyserver"
)

// KeySourceConfig is the home's keysource.json. Its absence means the
// keyring file. It holds no secret: the PIN is never stored, and a key
// server's client key is named by its path only.
type KeySourceConfig struct {
	Version int    `json:"version"`
	Type    string `json:"type"`          // "pkcs11" or "keyserver"
	URI     string `json:"uri,omitempty"` // pkcs11: RFC 7512 PKCS#11 URI (token, object, module-path)
	// keyserver (docs/keyserver.md): the server's https URL and the client
	// bundle `holdfast keyserver enroll` wrote. Relative paths are
	// relative to the home.
	URL        string `json:"url,omitempty"`
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	CA         string `json:"ca,omitempty"`
	// Attestation, for a key server, is the type of attestation evidence
	// this host sends with requests that release keys ("sev-snp"), when
	// the server's release policy asks it of this client; "" sends none.
	Attestation string `json:"attestation,omitempty"`
}

// Describe names the source for people: the token URI or the server URL.
func (c KeySourceConfig) Describe() string {
	if c.Type == KeySourceKeyServer {
		return "the key server " + c.URL
	}
	return "the PKCS#11 token " + c.URI
}

// Path resolves one of the config's file paths against home.
func (c KeySourceConfig) Path(home, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(home, p)
}

func (c KeySourceConfig) valid() bool {
	switch c.Type {
	case KeySourcePKCS11:
		return c.URI != ""
	case KeySourceKeyServer:
		return c.URL != "" && c.ClientCert != "" && c.ClientKey != "" && c.CA != ""
	}
	return false
}

// LoadKeySource reads the home's keysource.json; nil without error when
// there is none (the keyring file is the source).
func LoadKeySource(home string) (*KeySourceConfig, error) {
	p := filepath.Join(home, KeySourceFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c KeySourceConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("reading %q: %w", p, err)
	}
	if c.Version != 1 || !c.valid() {
		return nil, fmt.Errorf("%q: unsupported key source (version %d, type %q)", p, c.Version, c.Type)
	}
	return &c, nil
}

// SaveKeySource writes the home's keysource.json, refusing to replace one.
func SaveKeySource(home string, c KeySourceConfig) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	err = atomicfile.WriteFile(filepath.Join(home, KeySourceFile), append(b, '\n'), atomicfile.Options{Mode: 0o600, NoReplace: true})
	if errors.Is(err, atomicfile.ErrExists) {
		return fmt.Errorf("%q already names a key source: %w", filepath.Join(home, KeySourceFile), ErrExists)
	}
	return err
}

// PKCS11StatePath is the path of the PKCS#11 state file in home.
func PKCS11StatePath(home string) string { return filepath.Join(home, PKCS11StateFile) }

// openRootKeys returns the repository's key source: given (already open),
// else kr (an unlocked keyring session), else the keyring file opened with
// pass. A home that names another key source needs it given.
func openRootKeys(home string, given RootKeys, kr *keyring.Keyring, pass []byte) (RootKeys, error) {
	if given != nil {
		if kr != nil {
			kr.Close()
		}
		return given, nil
	}
	if kr != nil {
		return kr, nil
	}
	ks, err := LoadKeySource(home)
	if err != nil {
		return nil, err
	}
	if ks != nil {
		if ks.Type == KeySourceKeyServer {
			return nil, fmt.Errorf("%w: %s; open it with the client certificate", ErrKeySourceNeeded, ks.Describe())
		}
		return nil, fmt.Errorf("%w: the PKCS#11 token %s; open it with the token's PIN", ErrKeySourceNeeded, ks.URI)
	}
	k, err := keyring.Open(KeyringPath(home), pass)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// errSpreadNeedsKeyring: the spread store derives its stripe-tag key with
// HKDF from a root key (keyring.DeriveKey), which a token that offers only
// AES-GCM cannot do, and which a key server does not offer.
var errSpreadNeedsKeyring = errors.New("the spread store derives its key from a root key held in this process; it cannot be used with a PKCS#11 or key server key source")

// openStoreFor is openStoreKeyed for any key source.
func openStoreFor(ctx context.Context, home string, sc StoreConfig, src RootKeys, hooks *Hooks) (store.Store, error) {
	if kr, ok := src.(*keyring.Keyring); ok {
		return openStoreKeyed(ctx, home, sc, kr, hooks)
	}
	if sc.Type == "spread" {
		return nil, errSpreadNeedsKeyring
	}
	return openStore(ctx, sc, hooks)
}

// keyStoreFor is keyStore for any key source.
func keyStoreFor(ctx context.Context, home string, sc StoreConfig, st store.Store, src RootKeys, hooks *Hooks) (store.Store, error) {
	if kr, ok := src.(*keyring.Keyring); ok {
		return keyStore(ctx, home, sc, st, kr, hooks)
	}
	if sc.Type == "spread" {
		st.Close()
		return nil, errSpreadNeedsKeyring
	}
	return st, nil
}

// RootKeys returns the repository's root key source.
func (r *Repo) RootKeys() RootKeys { return r.kr }

// initRootKeys returns a new repository's key source: o.Keys, or a new
// keyring file for id; made lists the files it created.
func initRootKeys(o InitOptions, id keys.ID) (RootKeys, []string, error) {
	if o.Keys != nil {
		return o.Keys, nil, nil
	}
	// A home that names a token would open with it, not with this keyring.
	if ks, err := LoadKeySource(o.Home); err != nil || ks != nil {
		if err == nil {
			err = fmt.Errorf("%q names %s; init makes a keyring repository only in a home without one: %w",
				filepath.Join(o.Home, KeySourceFile), ks.Describe(), ErrExists)
		}
		return nil, nil, err
	}
	kp := filepath.Join(o.Home, KeyringFile)
	kr, err := keyring.Create(kp, o.Passphrase, id, o.KDF)
	if err != nil {
		return nil, nil, err
	}
	return kr, []string{kp}, nil
}
