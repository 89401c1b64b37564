package main

// This file owns `holdfast keys`: custody of the root keys (docs/keys.md).
// Subcommands: backup and restore (k-of-n shares), passwd (the keyring's
// passphrase), ceremony (a new repository whose root key is held in a
// PKCS#11 token). The key-version commands (list, rotate, rewrap, retire)
// join them in keysCmd's AddCommand list. Every key operation is recorded
// in the home's key-operation log (keyslog.go, internal/keys/oplog).

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/keyshare"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

// The key-operation log (docs/keys.md, "The key-operation log"): every
// key operation is appended to HOME/keyops.log. A command checks first
// that the log can take a record (keyLogReady), so that a log that cannot
// stops it before it does anything. An operation that can be undone and
// whose record then fails is undone and fails (keys backup deletes its
// shares); one that cannot be undone (a new repository, a rotation, a
// new passphrase, a restore, key use) stays done, and the command warns
// and exits 1 (unrecorded).

// keyOpLog is the key-operation log of home.
func keyOpLog(home string) *oplog.Log { return oplog.New(oplog.Path(home)) }

// keyLogReady checks that home's key-operation log, and its audit log if
// it keeps one, can take a record now.
func keyLogReady(home string) error {
	if err := keyOpLog(home).Ready(); err != nil {
		return fmt.Errorf("the key-operation log cannot take a record, so nothing was done (check it with 'holdfast keys log --check'): %w", err)
	}
	if err := auditReady(home); err != nil { // audit.go
		return fmt.Errorf("the audit log cannot take a record, so nothing was done (check it with 'holdfast audit verify'; docs/audit.md, \"Repair\"): %w", err)
	}
	return nil
}

// keyHome returns the home of a key command, whose log is ready.
func (e *env) keyHome() (string, error) {
	home, err := e.homeDir()
	if err != nil {
		return "", err
	}
	return home, keyLogReady(home)
}

// recordKeyOp appends op, dated now, to home's key-operation log and, if
// the home keeps one, to its audit log.
func recordKeyOp(home string, op keys.Op) error { return recordKeyOpTo(home, op, nil) }

// recordKeyOpTo is recordKeyOp with the repository open: the audit log's
// checkpoint is copied to its store too (sink nil: to the off-box file
// only).
func recordKeyOpTo(home string, op keys.Op, sink audit.CheckpointSink) error {
	op.Time = time.Now().UTC()
	if err := keyOpLog(home).Record(op); err != nil {
		return fmt.Errorf("the key-operation log did not record %q: %w", op.Op, err)
	}
	if err := recordAudit(home, op, sink); err != nil { // audit.go
		return fmt.Errorf("the audit log did not record %q: %w", op.Op, err)
	}
	return nil
}

// unrecorded reports an operation that was done, and stays done, but
// that the key-operation log could not record: a warning, and exit 1.
func (e *env) unrecorded(err error) error {
	warnf(e.stderr, "%v; the operation itself was done: note it by hand, and repair the log (docs/keys.md, \"The key-operation log\")", err)
	return codeError{code: exitError}
}

func (e *env) keysCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Custody of the keys: versions, k-of-n backup and restore, passphrase, PKCS#11 ceremony",
		Long: `keys manages the repository's root keys (docs/keys.md):

  keys list                                        root and bucket key versions and what each protects
  keys rotate [--bucket B]                         a new root (or bucket) key version, primary for new writes
  keys rewrap [--bucket B]                         move what older versions protect under the primary ones
  keys retire [--bucket B] vN                      destroy a version nothing depends on any more
  keys backup --shares N --threshold K --out DIR   split the root keys into N share files
  keys restore SHARE...                            rebuild them from K shares into a new keyring or token
  keys passwd                                      change the keyring's passphrase
  keys ceremony --key-source pkcs11:…              create a repository whose root key is in an HSM
  keys log [--check]                               the key-operation log; --check verifies its chain`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(e.keysListCmd(), e.keysRotateCmd(), e.keysBackupCmd(), e.keysRestoreCmd(), e.keysPasswdCmd(), e.keysCeremonyCmd(),
		e.keysLogCmd(),                       // keyslog.go
		e.keysRewrapCmd(), e.keysRetireCmd()) // keyslife.go
	return c
}

// openKeySource opens the home's PKCS#11 key source with its PIN (from
// --pin-file, HOLDFAST_PKCS11_PIN or the prompt), or its key server
// (keyserver.go). It returns nil, nil when the home's root keys are in the
// keyring file.
func (e *env) openKeySource(home string) (repo.RootKeys, error) {
	ks, err := repo.LoadKeySource(home)
	if err != nil || ks == nil {
		return nil, err
	}
	if ks.Type == repo.KeySourceKeyServer {
		return openKeyServer(home, *ks)
	}
	u, err := hsm.ParseURI(ks.URI)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(home, repo.KeySourceFile), err)
	}
	pin, err := hsm.ReadPIN(e.pinFile, u.Token)
	if err != nil {
		return nil, err
	}
	defer clear(pin)
	s, err := hsm.Open(repo.PKCS11StatePath(home), u, pin, hsm.Options{})
	if err != nil { // no typed nil in the interface
		return nil, pinError(err)
	}
	return s, nil
}

// pinError gives the token's refusals of the PIN the key exit code.
func pinError(err error) error {
	if errors.Is(err, hsm.ErrWrongPIN) || errors.Is(err, hsm.ErrPINLocked) {
		return codeError{code: exitKey, err: err}
	}
	return err
}

// homeAndKeys is homeAndPassphrase for commands that work with either
// key source: for a home whose root keys are in a token it returns the
// opened source (the caller owns it) and no passphrase.
func (e *env) homeAndKeys() (string, []byte, repo.RootKeys, error) {
	if err := e.hardenForKeys(); err != nil {
		return "", nil, nil, err
	}
	home, err := e.homeDir()
	if err != nil {
		return "", nil, nil, err
	}
	src, err := e.openKeySource(home)
	if err != nil {
		return "", nil, nil, err
	}
	if src != nil {
		return home, nil, src, nil
	}
	pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile})
	return home, pass, nil, err
}

// openKeyring opens the home's keyring file: from an unlocked session, or
// with the passphrase. A home whose root key is in a token is refused with
// why (what); the caller closes the keyring.
func (e *env) openKeyring(what string) (string, *keyring.Keyring, error) {
	if err := e.hardenForKeys(); err != nil {
		return "", nil, err
	}
	home, err := e.homeDir()
	if err != nil {
		return "", nil, err
	}
	if ks, err := repo.LoadKeySource(home); err != nil {
		return "", nil, err
	} else if ks != nil {
		return "", nil, codeError{code: exitRefused, err: fmt.Errorf("the root key of this repository is in the PKCS#11 token %s; %s", ks.URI, what)}
	}
	if kr, err := keyring.OpenSession(repo.KeyringPath(home)); err == nil {
		return home, kr, nil
	}
	pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile})
	if err != nil {
		return "", nil, err
	}
	defer clear(pass)
	kr, err := keyring.Open(repo.KeyringPath(home), pass)
	return home, kr, err
}

func (e *env) keysBackupCmd() *cobra.Command {
	var n, k int
	var out string
	c := &cobra.Command{
		Use:   "backup --shares N --threshold K --out DIR",
		Short: "Split the root keys into N share files, any K of which restore them",
		Long: `backup writes N share files into DIR (created, mode 0700; each file 0600).
Any K of them rebuild the repository's root keys with 'holdfast keys restore';
fewer reveal nothing. Each file is printable text with a checksum. Give each
share to a different person or place. A share set holds the root keys as
they are now: after a rotation, or a shred, make a new set and destroy the
old one (docs/keys.md).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			if k < 2 || k > n || n > 255 {
				return usagef("need 2 <= --threshold <= --shares <= 255, not threshold %d of %d", k, n)
			}
			if _, err := e.keyHome(); err != nil {
				return err
			}
			home, kr, err := e.openKeyring("the token never exports it, so keys backup cannot: its shares were written by the key ceremony (docs/keys.md)")
			if err != nil {
				return err
			}
			m, err := kr.Export()
			kr.Close()
			if err != nil {
				return err
			}
			defer m.Wipe()
			set, err := writeShares(keys.SourceKeyring, m, n, k, out)
			if err != nil {
				return err
			}
			// Unrecorded, the shares are not handed out: they go again.
			if err := recordKeyOp(home, set.op("backup")); err != nil {
				set.remove()
				return err
			}
			return e.reportShares(set)
		},
	}
	c.Flags().IntVar(&n, "shares", 5, "how many shares to write")
	c.Flags().IntVar(&k, "threshold", 3, "how many shares restore the keys")
	c.Flags().StringVar(&out, "out", "", "directory to write the share files into")
	return c
}

// shareSet is a share set written to files, for the report.
type shareSet struct {
	src       keys.SourceKind
	repo      keys.ID
	set       [8]byte
	threshold int
	versions  []uint32
	files     []string
	indexes   []int
	sums      []string
}

// remove deletes the share files (a ceremony that failed after writing
// them: they would name a key no token holds).
func (s *shareSet) remove() {
	for _, f := range s.files {
		os.Remove(f)
	}
}

// writeShares splits m and writes one file per share into dir. It refuses
// to overwrite a file and removes what it wrote when it fails. It prints
// nothing: the caller reports the set (reportShares) once the whole
// operation succeeded.
func writeShares(src keys.SourceKind, m keyring.Material, n, k int, dir string) (*shareSet, error) {
	shares, texts, err := keyshare.Split(src, m, n, k, time.Now())
	if err != nil {
		return nil, err
	}
	defer func() {
		for i := range texts {
			clear(texts[i])
			clear(shares[i].Y)
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	set := &shareSet{src: src, repo: m.Repo, set: shares[0].Set, threshold: k}
	for _, r := range m.Roots {
		set.versions = append(set.versions, r.Info.Version)
	}
	for i, s := range shares {
		p := filepath.Join(dir, s.FileName())
		if err := writeNewFile(p, texts[i]); err != nil {
			set.remove()
			return nil, fmt.Errorf("writing share %d: %w", s.Index, err)
		}
		set.files = append(set.files, p)
		set.indexes = append(set.indexes, s.Index)
		set.sums = append(set.sums, s.Checksum)
	}
	return set, nil
}

// op is the key-operation record of the operation (backup, ceremony)
// that wrote s: what, never the shares.
func (s *shareSet) op(name string) keys.Op {
	return keys.Op{Op: name, Repo: s.repo, Source: s.src, Versions: s.versions,
		Detail: fmt.Sprintf("%d shares, threshold %d, set %x", len(s.files), s.threshold, s.set)}
}

// reportShares prints set: the files and their checksums.
func (e *env) reportShares(set *shareSet) error {
	if e.jsonOut {
		type jshare struct {
			File     string `json:"file"`
			Index    int    `json:"index"`
			Checksum string `json:"checksum"`
		}
		var js []jshare
		for i, f := range set.files {
			js = append(js, jshare{f, set.indexes[i], set.sums[i]})
		}
		return printJSON(e.stdout, map[string]any{"repository": fmt.Sprintf("%x", set.repo[:]), "set": fmt.Sprintf("%x", set.set),
			"threshold": set.threshold, "shares": js})
	}
	fmt.Fprintf(e.stdout, "wrote %d shares of set %x (any %d restore the root keys of repository %x):\n",
		len(set.files), set.set, set.threshold, set.repo[:])
	for i, f := range set.files {
		fmt.Fprintf(e.stdout, "  %s  checksum %s\n", f, set.sums[i])
	}
	fmt.Fprintln(e.stdout, "Give each share to a different person or place, then delete them from this machine.")
	return nil
}

// writeNewFile creates path (mode 0600, refusing an existing file) with
// data, synced.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// readShares reads and checks share files; a corrupt one is named by its
// file and checksum.
func readShares(paths []string) ([]keyshare.Share, error) {
	var out []keyshare.Share
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		if err != nil {
			return nil, err
		}
		s, err := keyshare.Parse(p, b)
		clear(b)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (e *env) keysRestoreCmd() *cobra.Command {
	var keySource string
	c := &cobra.Command{
		Use:   "restore [--key-source pkcs11:…] SHARE...",
		Short: "Rebuild the root keys from K share files into a new keyring file or a fresh PKCS#11 token",
		Long: `restore combines share files written by 'keys backup' or 'keys ceremony'.
Shares of a keyring make a new keyring file in the home, sealed under a new
passphrase (--passphrase-file, HOLDFAST_PASSPHRASE or the prompt). Shares of
a PKCS#11 root key are imported, non-extractable, into the token named by
--key-source (PIN from --pin-file, HOLDFAST_PKCS11_PIN or the prompt), and
the home gets its keysource.json and state file. Nothing existing is
overwritten. Then rebuild the catalog with 'holdfast recover'.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("usage: %s", c.UseLine())
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := e.hardenForKeys(); err != nil {
				return err
			}
			home, err := e.keyHome()
			if err != nil {
				return err
			}
			shares, err := readShares(args)
			if err != nil {
				return err
			}
			defer func() {
				for _, s := range shares {
					clear(s.Y)
				}
			}()
			src, m, err := keyshare.Combine(shares)
			if err != nil {
				return err
			}
			defer m.Wipe()
			var where string
			switch src {
			case keys.SourceKeyring:
				if keySource != "" {
					return codeError{code: exitRefused, err: errors.New("these shares hold a keyring's root keys, whose wraps a PKCS#11 token cannot open; restore them without --key-source")}
				}
				where, err = e.restoreKeyring(home, m)
			case keys.SourcePKCS11:
				if keySource == "" {
					return usagef("these shares hold a PKCS#11 root key: name the token to import it into with --key-source 'pkcs11:token=…;object=…?module-path=…'")
				}
				where, err = e.restoreToken(home, keySource, m)
			default:
				err = fmt.Errorf("shares of an unknown key source kind %d", src)
			}
			if err != nil {
				return err
			}
			vers := make([]uint32, 0, len(m.Roots))
			for _, r := range m.Roots {
				vers = append(vers, r.Info.Version)
			}
			rerr := recordKeyOp(home, keys.Op{Op: "restore", Repo: m.Repo, Source: src, Versions: vers,
				Detail: fmt.Sprintf("%d shares of set %x into %s", len(shares), shares[0].Set, where)})
			if e.jsonOut {
				if err := printJSON(e.stdout, map[string]any{"repository": fmt.Sprintf("%x", m.Repo[:]), "restored_into": where, "versions": vers}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "restored root key versions %v of repository %x into %s\n", vers, m.Repo[:], where)
				if _, err := os.Stat(filepath.Join(home, repo.CatalogFile)); err != nil {
					fmt.Fprintln(e.stdout, "Next: rebuild the catalog from the store with 'holdfast recover --store …'.")
				}
			}
			if rerr != nil {
				return e.unrecorded(rerr)
			}
			return nil
		},
	}
	c.Flags().StringVar(&keySource, "key-source", "", "PKCS#11 URI of the fresh token to import a PKCS#11 root key into")
	return c
}

// restoreKeyring writes m into a new keyring file in home.
func (e *env) restoreKeyring(home string, m keyring.Material) (string, error) {
	path := repo.KeyringPath(home)
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("%q exists; restore makes a new keyring only where there is none (move it away first): %w", path, keyring.ErrExists)
	}
	if ks, err := repo.LoadKeySource(home); err != nil || ks != nil {
		return "", codeError{code: exitRefused, err: fmt.Errorf("home %q names the PKCS#11 key source %v; restore a keyring into another home", home, ks)}
	}
	pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile, New: true, Prompt: "New keyring passphrase: "})
	if err != nil {
		return "", err
	}
	defer clear(pass)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", err
	}
	if !e.quiet && !e.jsonOut {
		fmt.Fprintln(e.stderr, "holdfast: calibrating the passphrase key derivation…")
	}
	kr, err := keyring.CreateFromMaterial(path, pass, keyring.Calibrate(keyring.DefaultCalibrationTarget), m)
	if err != nil {
		return "", err
	}
	kr.Close()
	return path, nil
}

// restoreToken imports m into the token of uri and writes the home's
// keysource.json and state file.
func (e *env) restoreToken(home, uri string, m keyring.Material) (string, error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return "", usagef("--key-source: %v", err)
	}
	if err := checkFreshHome(home); err != nil {
		return "", err
	}
	pin, err := hsm.ReadPIN(e.pinFile, u.Token)
	if err != nil {
		return "", err
	}
	defer clear(pin)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", err
	}
	s, err := hsm.Create(repo.PKCS11StatePath(home), u, pin, m, hsm.Options{})
	if err != nil {
		return "", pinError(err)
	}
	if err := repo.SaveKeySource(home, repo.KeySourceConfig{Version: 1, Type: "pkcs11", URI: u.String()}); err != nil {
		s.Close()
		var vers []uint32
		for _, r := range m.Roots {
			if r.Info.State != keyring.StateDestroyed {
				vers = append(vers, r.Info.Version)
			}
		}
		hsm.DestroyRootKeys(u, pin, vers)
		os.Remove(repo.PKCS11StatePath(home))
		return "", err
	}
	s.Close()
	return fmt.Sprintf("token %q (object %q)", u.Token, u.Object), nil
}

// checkFreshHome refuses a home that already holds a key source.
func checkFreshHome(home string) error {
	for _, f := range []string{repo.KeyringFile, repo.KeySourceFile, repo.PKCS11StateFile} {
		p := filepath.Join(home, f)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%q exists; the home already has a key source (use a new home, or move it away): %w", p, repo.ErrExists)
		}
	}
	return nil
}

func (e *env) keysPasswdCmd() *cobra.Command {
	var newFile string
	c := &cobra.Command{
		Use:   "passwd [--new-passphrase-file FILE]",
		Short: "Change the keyring's passphrase (the root keys stay the same)",
		Long: `passwd reseals the keyring file under a new passphrase, asked twice on the
terminal, or read from --new-passphrase-file or HOLDFAST_NEW_PASSPHRASE. The
current one comes as for every command (unlocked session, --passphrase-file,
HOLDFAST_PASSPHRASE or the prompt). The root keys do not change, so share sets
stay valid; copies of the keyring file sealed under the old passphrase still
open with it: replace them. A root key in a PKCS#11 token is protected by the
token's PIN instead: change it with the token's tools.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := e.keyHome(); err != nil {
				return err
			}
			home, kr, err := e.openKeyring("keys passwd changes a keyring's passphrase: change the token's PIN with its own tools (softhsm2-util, pkcs11-tool --change-pin)")
			if err != nil {
				return err
			}
			defer kr.Close()
			np, err := readNewPassphrase(newFile)
			if err != nil {
				return err
			}
			defer clear(np)
			if !e.quiet && !e.jsonOut {
				fmt.Fprintln(e.stderr, "holdfast: calibrating the passphrase key derivation…")
			}
			if err := kr.ChangePassphrase(np, keyring.Calibrate(keyring.DefaultCalibrationTarget)); err != nil {
				return err
			}
			rerr := recordKeyOp(home, keys.Op{Op: "passwd", Repo: kr.Repo(), Source: keys.SourceKeyring, Versions: rootVersions(kr.Versions())})
			if e.jsonOut {
				if err := printJSON(e.stdout, map[string]bool{"changed": true}); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(e.stdout, "passphrase changed; replace any copy of the keyring file sealed under the old one")
			}
			if rerr != nil {
				return e.unrecorded(rerr)
			}
			return nil
		},
	}
	c.Flags().StringVar(&newFile, "new-passphrase-file", "", "read the new passphrase from the first line of this file (mode 0600)")
	return c
}

// NewPassphraseEnv holds the new passphrase for keys passwd (scripts);
// HOLDFAST_PASSPHRASE is the current one.
const NewPassphraseEnv = "HOLDFAST_NEW_PASSPHRASE"

// readNewPassphrase returns the new passphrase from file, the environment
// or the terminal (asked twice). Never from HOLDFAST_PASSPHRASE, which
// holds the current one.
// From every source it is held to the passphrase policy
// (keyring.CheckNewPassphrase).
func readNewPassphrase(file string) ([]byte, error) {
	if file != "" {
		return keyring.ReadPassphrase(keyring.PassphraseOptions{File: file, New: true})
	}
	if v, ok := secret.LookupEnv(NewPassphraseEnv); ok {
		if v == "" {
			return nil, fmt.Errorf("%w: %s is set but empty", keyring.ErrEmptyPassphrase, NewPassphraseEnv)
		}
		p := []byte(v)
		if err := keyring.CheckNew(p, NewPassphraseEnv); err != nil {
			clear(p)
			return nil, err
		}
		return p, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return nil, fmt.Errorf("%w: no terminal to ask on; use --new-passphrase-file FILE or set %s", keyring.ErrNoPassphrase, NewPassphraseEnv)
	}
	defer tty.Close()
	ask := func(prompt string) ([]byte, error) {
		io.WriteString(tty, prompt)
		p, err := term.ReadPassword(int(tty.Fd()))
		io.WriteString(tty, "\n")
		return p, err
	}
	p, err := ask("New keyring passphrase: ")
	if err != nil {
		return nil, err
	}
	if len(p) > 0 {
		// Refused before it is asked again.
		if err := keyring.CheckNew(p, "the terminal"); err != nil {
			clear(p)
			return nil, err
		}
	}
	q, err := ask("Confirm new passphrase: ")
	defer clear(q)
	if err != nil || len(p) == 0 || subtle.ConstantTimeCompare(p, q) != 1 {
		clear(p)
		if err == nil {
			err = errors.New("the passphrases are empty or do not match")
		}
		return nil, err
	}
	return p, nil
}

func (e *env) keysCeremonyCmd() *cobra.Command {
	var sf storeFlags
	var keySource, out string
	var n, k int
	c := &cobra.Command{
		Use:   "ceremony --key-source pkcs11:… --shares N --threshold K --out DIR [--store DIR]",
		Short: "Create a repository whose root key is held, non-extractable, in a PKCS#11 token",
		Long: `ceremony creates a new repository (as init does) whose root key lives in an
HSM (docs/keys.md, "Key ceremony"): it generates the root key in protected
memory, writes N share files into DIR (any K restore it), imports the key
into the token named by --key-source as non-extractable and sensitive, wipes
it, and initialises the repository. The token's PIN comes from --pin-file,
HOLDFAST_PKCS11_PIN or the prompt, never from the command line. The token
never gives the key back: these shares are its only backup.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if keySource == "" || out == "" {
				return usagef("--key-source and --out are required")
			}
			if k < 2 || k > n || n > 255 {
				return usagef("need 2 <= --threshold <= --shares <= 255, not threshold %d of %d", k, n)
			}
			u, err := hsm.ParseURI(keySource)
			if err != nil {
				return usagef("--key-source: %v", err)
			}
			home, s3cfg, err := e.newHomeWithoutKeyring(sf)
			if err != nil {
				return err
			}
			pin, err := hsm.ReadPIN(e.pinFile, u.Token)
			if err != nil {
				return err
			}
			defer clear(pin)
			m, err := newRootMaterial()
			if err != nil {
				return err
			}
			defer m.Wipe()
			// Check the PIN and that the token has room for the key before
			// anything is written; then the shares, since a key imported
			// without them could never be backed up.
			if err := hsm.CheckImport(u, pin, m); err != nil {
				return pinError(err)
			}
			set, err := writeShares(keys.SourcePKCS11, m, n, k, out)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(home, 0o700); err != nil {
				set.remove()
				return err
			}
			src, err := hsm.Create(repo.PKCS11StatePath(home), u, pin, m, hsm.Options{})
			m.Wipe() // the token holds it now; the shares are its backup
			if err != nil {
				set.remove()
				return pinError(err)
			}
			// Undo everything: the key leaves the token, and its shares go.
			undo := func() {
				src.Close()
				hsm.DestroyRootKeys(u, pin, set.versions)
				os.Remove(repo.PKCS11StatePath(home))
				os.Remove(repo.PKCS11StatePath(home) + ".lock")
				os.Remove(filepath.Join(home, repo.KeySourceFile))
				set.remove()
			}
			if err := repo.SaveKeySource(home, repo.KeySourceConfig{Version: 1, Type: "pkcs11", URI: u.String()}); err != nil {
				undo()
				return err
			}
			storeDir := sf.store
			if s3cfg != nil {
				storeDir = ""
			}
			r, err := repo.Init(c.Context(), repo.InitOptions{Home: home, StorePath: storeDir, S3: s3cfg, Keys: src, Hooks: e.hooks})
			if err != nil {
				undo()
				return err
			}
			defer r.Close()
			id := r.ID()
			// The repository exists now: an unrecorded ceremony still
			// shows its shares, which are the key's only backup.
			op := set.op("ceremony")
			op.Detail += fmt.Sprintf("; root key in token %q, object %q", u.Token, u.Object)
			rerr := recordKeyOp(home, op)
			if err := e.reportShares(set); err != nil {
				return err
			}
			if !e.jsonOut {
				fmt.Fprintf(e.stdout, "created repository %x\nhome:  %s\nstore: %s\nroot key: token %q, object %q (non-extractable)\n",
					id[:], home, r.StoreDescription(), u.Token, u.Object)
			}
			if rerr != nil {
				return e.unrecorded(rerr)
			}
			return nil
		},
	}
	sf.register(c, "where the repository is stored (default: the directory HOME/store)")
	c.Flags().StringVar(&keySource, "key-source", "", "PKCS#11 URI: pkcs11:token=LABEL;object=LABEL?module-path=/path/to/module.so")
	c.Flags().IntVar(&n, "shares", 5, "how many shares to write")
	c.Flags().IntVar(&k, "threshold", 3, "how many shares restore the key")
	c.Flags().StringVar(&out, "out", "", "directory to write the share files into")
	return c
}

// newRootMaterial makes a new repository id and root key version 1 in
// protected memory.
// newHomeWithoutKeyring checks what a new repository whose root keys are
// not in a keyring file (a token, a key server) needs before anything is
// made: a store it can use, a hardened process, an empty home whose
// key-operation log can take a record. It returns the home and the S3
// store's settings, if any.
func (e *env) newHomeWithoutKeyring(sf storeFlags) (string, *repo.S3Config, error) {
	s3cfg, err := sf.s3()
	if err != nil {
		return "", nil, err
	}
	if strings.HasPrefix(sf.store, spreadPrefix) {
		return "", nil, usagef("the spread store needs a keyring (its key derives from a root key held in this process)")
	}
	if err := e.hardenForKeys(); err != nil {
		return "", nil, err
	}
	home, err := e.keyHome()
	if err != nil {
		return "", nil, err
	}
	if err := checkFreshHome(home); err != nil {
		return "", nil, err
	}
	if _, err := os.Stat(filepath.Join(home, repo.ConfigFile)); err == nil {
		return "", nil, fmt.Errorf("a repository already exists at %q: %w", home, repo.ErrExists)
	}
	return home, s3cfg, nil
}

func newRootMaterial() (keyring.Material, error) {
	var id keys.ID
	if _, err := rand.Read(id[:]); err != nil {
		return keyring.Material{}, err
	}
	k, err := secret.New()
	if err != nil {
		return keyring.Material{}, err
	}
	return keyring.Material{Repo: id, Primary: 1, Roots: []keyring.RootMaterial{{
		Info: keyring.RootKeyInfo{Version: 1, Created: time.Now().UTC().Truncate(time.Second), State: keyring.StateActive}, Key: k}}}, nil
}
