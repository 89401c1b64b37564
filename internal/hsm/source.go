package hsm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/keycache"
	"github.com/holdfast/holdfast/internal/secret"
)

// ErrClosed: the source was closed.
var ErrClosed = errors.New("PKCS#11 key source is closed")

// Options tune a Source.
type Options struct {
	// CacheTTL is how long unwrapped keys stay cached: 0 means
	// DefaultCacheTTL, a negative value turns the cache off.
	CacheTTL time.Duration
	// Now replaces the clock (tests).
	Now func() time.Time
}

// Stats counts a source's key operations since it was opened.
type Stats struct {
	Wraps     uint64 // AES-GCM encryptions in the token
	Unwraps   uint64 // AES-GCM decryptions in the token
	CacheHits uint64 // unwraps answered from the cache
}

// Source is a keys.Source whose root keys are AES-256 key objects in a
// PKCS#11 token, never extractable: wraps and unwraps are AES-GCM
// operations inside the token (AlgGCM, docs/format.md "Key wrap"). Next to
// it, a state file in the home holds the root key version records and the
// freshness record (state.go). Safe for concurrent use.
type Source struct {
	uri  URI
	tok  *Token
	path string
	c    *keycache.Cache

	mu      sync.RWMutex
	st      state
	skey    secret.Key // seals the state file
	hdrRaw  []byte     // the state file's header (repo, wrapped state key)
	disk    [32]byte   // SHA-256 of the state file as last read or written
	handles map[uint32]pkcs11.ObjectHandle
	shut    bool

	stop  chan struct{}
	stats struct{ wraps, unwraps, hits atomic.Uint64 }
}

var _ keys.Source = (*Source)(nil)

// Open opens the source: it logs in to the URI's token with pin and opens
// the state file at statePath with the token's root key. A wrong PIN is
// ErrWrongPIN; a token without the root key is ErrNoKey. The caller
// clears pin.
func Open(statePath string, u URI, pin []byte, o Options) (*Source, error) {
	b, err := readStateFile(statePath)
	if err != nil {
		return nil, fmt.Errorf("reading PKCS#11 state file: %w", err)
	}
	h, ct, err := parseStateFile(b)
	if err != nil {
		return nil, err
	}
	tok, err := OpenToken(u, pin)
	if err != nil {
		return nil, err
	}
	s := newSource(u, tok, statePath, h.repo, o)
	skey, err := s.unwrapStateKey(h)
	if err != nil {
		s.Close()
		return nil, err
	}
	st, err := openState(skey, h, ct)
	if err != nil {
		skey.Wipe()
		s.Close()
		return nil, err
	}
	s.st, s.skey, s.hdrRaw, s.disk = st, skey, h.raw, sha256.Sum256(b)
	if _, err := s.handle(st.primary); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Create imports m's root keys into the URI's token as non-extractable
// objects and writes a new state file at statePath (refusing an existing
// one). It is the end of a key ceremony and of a restore from shares
// (docs/keys.md). If anything fails, the objects it imported are
// destroyed again. The caller still wipes m and clears pin.
func Create(statePath string, u URI, pin []byte, m keyring.Material, o Options) (*Source, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	tok, err := OpenToken(u, pin)
	if err != nil {
		return nil, err
	}
	s := newSource(u, tok, statePath, m.Repo, o)
	s.st = state{repo: m.Repo, primary: m.Primary, hasFresh: m.HasFresh, fresh: m.Fresh}
	var imported []uint32
	fail := func(err error) (*Source, error) {
		for _, v := range imported {
			_ = tok.destroyKey(u.Object, v)
		}
		s.Close()
		return nil, err
	}
	for _, r := range m.Roots {
		s.st.versions = append(s.st.versions, r.Info)
		if r.Info.State == keyring.StateDestroyed {
			continue
		}
		if err := tok.importKey(u.Object, r.Info.Version, r.Key); err != nil {
			return fail(err)
		}
		imported = append(imported, r.Info.Version)
	}
	if s.skey, err = secret.New(); err != nil {
		return fail(err)
	}
	if err := s.writeState(s.st, false); err != nil {
		return fail(fmt.Errorf("writing PKCS#11 state file: %w", err))
	}
	return s, nil
}

// DefaultCacheTTL is how long an unwrapped key stays cached by default:
// long enough that a burst of requests for one bucket costs one HSM
// operation, short enough that a key leaves memory soon after use.
const DefaultCacheTTL = 30 * time.Second

func newSource(u URI, tok *Token, path string, repo keys.ID, o Options) *Source {
	ttl := o.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	s := &Source{uri: u, tok: tok, path: path, handles: map[uint32]pkcs11.ObjectHandle{}, st: state{repo: repo}}
	if ttl > 0 {
		s.c = keycache.New(ttl, o.Now)
		if o.Now == nil {
			// Expired keys are wiped even when nothing asks the cache.
			s.stop = make(chan struct{})
			go s.sweepEvery(ttl)
		}
	}
	return s
}

func (s *Source) sweepEvery(ttl time.Duration) {
	t := time.NewTicker(ttl)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.c.Sweep()
		case <-s.stop:
			return
		}
	}
}

// stateAD is the associated data of the state key's wrap.
func stateAD(repo keys.ID, ver uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeStateKey, Repo: repo, KEKVersion: ver}
}

func (s *Source) unwrapStateKey(h stateHeader) (secret.Key, error) {
	w := keys.Wrapped{Source: keys.SourcePKCS11, Alg: keys.AlgGCM, KEKVersion: h.kekVer, Data: h.wrapped}
	k, err := s.unwrapHSM(w, stateAD(h.repo, h.kekVer))
	if err != nil {
		return secret.Key{}, fmt.Errorf("opening the PKCS#11 state file %q with token %q: %w", s.path, s.uri.Token, err)
	}
	return k, nil
}

func openState(skey secret.Key, h stateHeader, ct []byte) (state, error) {
	var pt []byte
	err := skey.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		pt, err = aead.Open(nil, h.nonce, ct, h.raw)
		return err
	})
	if err != nil {
		return state{}, fmt.Errorf("%w: it does not open under its state key", errStateCorrupt)
	}
	return unmarshalState(h.repo, pt)
}

// writeState seals st and writes it; the state key is wrapped afresh under
// the primary version when the file is new or the header's version is
// not active any more. The caller holds s.mu (or owns s).
func (s *Source) writeState(st state, replace bool) error {
	if err := st.validate(); err != nil {
		return err
	}
	hdr := s.hdrRaw
	if hdr == nil || !s.headerVersionActive(st) {
		// The caller holds s.mu: the handle is found without it.
		h, ok := s.handles[st.primary]
		if !ok {
			var err error
			if h, err = s.tok.findKey(s.uri.Object, st.primary); err != nil {
				return err
			}
			s.handles[st.primary] = h
		}
		w, err := s.wrapWith(h, st.primary, stateAD(st.repo, st.primary), s.skey)
		if err != nil {
			return err
		}
		hdr = stateHeaderBytes(st.repo, st.primary, w.Data, make([]byte, 12))
	}
	nonce, err := randomNonce()
	if err != nil {
		return err
	}
	hdr = append(hdr[:stateHeaderLen-12:stateHeaderLen-12], nonce...)
	var file []byte
	err = s.skey.Use(func(kb []byte) error {
		aead, err := keys.NewGCM(kb)
		if err != nil {
			return err
		}
		file = aead.Seal(append([]byte(nil), hdr...), nonce, st.marshal(), hdr)
		return nil
	})
	if err != nil {
		return err
	}
	if err := writeStateFile(s.path, file, replace, s.disk); err != nil {
		return err
	}
	s.hdrRaw, s.disk = hdr, sha256.Sum256(file)
	return nil
}

func (s *Source) headerVersionActive(st state) bool {
	v := binary.BigEndian.Uint32(s.hdrRaw[25:29])
	i, ok := st.find(v)
	return ok && i.State != keyring.StateDestroyed
}

// handle returns (and remembers) the token object of root key version v.
func (s *Source) handle(v uint32) (pkcs11.ObjectHandle, error) {
	s.mu.RLock()
	h, ok := s.handles[v]
	s.mu.RUnlock()
	if ok {
		return h, nil
	}
	h, err := s.tok.findKey(s.uri.Object, v)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.handles[v] = h
	s.mu.Unlock()
	return h, nil
}

// Kind reports keys.SourcePKCS11.
func (s *Source) Kind() keys.SourceKind { return keys.SourcePKCS11 }

// URI returns the source's PKCS#11 URI.
func (s *Source) URI() URI { return s.uri }

// Repo returns the repository id.
func (s *Source) Repo() keys.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.repo
}

// Primary returns the root key version used for new wraps.
func (s *Source) Primary() uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.primary
}

// Versions lists the root key versions, oldest first.
func (s *Source) Versions() []keyring.RootKeyInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]keyring.RootKeyInfo(nil), s.st.versions...)
}

// Stats returns the operation counts.
func (s *Source) Stats() Stats {
	return Stats{Wraps: s.stats.wraps.Load(), Unwraps: s.stats.unwraps.Load(), CacheHits: s.stats.hits.Load()}
}

// Wrap seals k under root key version ver (which must be active) inside
// the token: a random 96-bit nonce, AES-256-GCM with ad as associated
// data. ad must name this repository and ver.
func (s *Source) Wrap(ctx context.Context, ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return keys.Wrapped{}, err
	}
	s.mu.RLock()
	shut, st := s.shut, s.st
	s.mu.RUnlock()
	switch info, ok := st.find(ver); {
	case shut:
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: %w: %w", ErrClosed, keys.ErrUnavailable)
	case ad.KEKVersion != ver:
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: associated data names root key version %d, not %d", ad.KEKVersion, ver)
	case ad.Repo != st.repo:
		return keys.Wrapped{}, errors.New("pkcs11 wrap: associated data names another repository")
	case !ok:
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: no root key version %d", ver)
	case info.State != keyring.StateActive:
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: root key version %d is %s", ver, info.State)
	}
	return s.wrapHSM(ver, ad, k)
}

func (s *Source) wrapHSM(ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	h, err := s.handle(ver)
	if err != nil {
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: %w", err)
	}
	return s.wrapWith(h, ver, ad, k)
}

// wrapWith wraps under the token object h of root key version ver.
func (s *Source) wrapWith(h pkcs11.ObjectHandle, ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	nonce, err := randomNonce()
	if err != nil {
		return keys.Wrapped{}, err
	}
	var ct []byte
	err = k.Use(func(kb []byte) error {
		var err error
		ct, err = s.tok.gcm(true, h, nonce, ad.Bytes(), kb)
		return err
	})
	if err != nil {
		if unavailable(err) {
			err = fmt.Errorf("%w: %w", err, keys.ErrUnavailable)
		}
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap under root key v%d: %w", ver, err)
	}
	s.stats.wraps.Add(1)
	if len(ct) != secret.KeySize+16 {
		return keys.Wrapped{}, fmt.Errorf("pkcs11 wrap: the token returned %d bytes, not %d", len(ct), secret.KeySize+16)
	}
	return keys.Wrapped{Source: keys.SourcePKCS11, Alg: keys.AlgGCM, KEKVersion: ver, Data: append(nonce, ct...)}, nil
}

// Unwrap opens w inside the token under the root key version it names,
// binding ad, or answers from the cache. Every reason it cannot — another
// source kind or algorithm, an unknown or destroyed version, associated
// data that does not match, a record sealed under another key or altered
// — is keys.ErrNotMyKey; a token that cannot answer is keys.ErrUnavailable.
func (s *Source) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	if err := ctx.Err(); err != nil {
		return secret.Key{}, err
	}
	s.mu.RLock()
	shut, st := s.shut, s.st
	s.mu.RUnlock()
	notMine := func(why string, args ...any) error {
		return fmt.Errorf("pkcs11 unwrap: %s: %w", fmt.Sprintf(why, args...), keys.ErrNotMyKey)
	}
	info, ok := st.find(w.KEKVersion)
	switch {
	case shut:
		return secret.Key{}, fmt.Errorf("pkcs11 unwrap: %w: %w", ErrClosed, keys.ErrUnavailable)
	case w.Source != keys.SourcePKCS11:
		return secret.Key{}, notMine("record is for key source kind %d", w.Source)
	case w.Alg != keys.AlgGCM || len(w.Data) != keys.WrappedLenGCM:
		return secret.Key{}, notMine("record uses wrap algorithm %d", w.Alg)
	case ad.KEKVersion != w.KEKVersion:
		return secret.Key{}, notMine("associated data names root key version %d, record %d", ad.KEKVersion, w.KEKVersion)
	case ad.Repo != st.repo:
		return secret.Key{}, notMine("associated data names another repository")
	case !ok:
		return secret.Key{}, notMine("no root key version %d", w.KEKVersion)
	case info.State == keyring.StateDestroyed:
		return secret.Key{}, notMine("root key version %d is destroyed", w.KEKVersion)
	}
	id := cacheID(w, ad)
	if k, ok := s.c.Get(id); ok {
		s.stats.hits.Add(1)
		return k, nil
	}
	k, err := s.unwrapHSM(w, ad)
	if err != nil {
		return secret.Key{}, err
	}
	// Close and Destroy purge the cache under s.mu: a key from the token
	// is cached, and given out, only if neither came in between.
	s.mu.RLock()
	defer s.mu.RUnlock()
	info, ok = s.st.find(w.KEKVersion)
	switch {
	case s.shut:
		k.Wipe()
		return secret.Key{}, fmt.Errorf("pkcs11 unwrap: %w: %w", ErrClosed, keys.ErrUnavailable)
	case !ok || info.State == keyring.StateDestroyed:
		k.Wipe()
		return secret.Key{}, notMine("root key version %d is destroyed", w.KEKVersion)
	}
	s.c.Put(id, k)
	return k, nil
}

// cacheID names an unwrap: the record and its associated data.
func cacheID(w keys.Wrapped, ad keys.AD) [32]byte {
	h := sha256.New()
	h.Write([]byte{byte(w.Source), byte(w.Alg)})
	h.Write(binary.BigEndian.AppendUint32(nil, w.KEKVersion))
	h.Write(w.Data)
	h.Write(ad.Bytes())
	var id [32]byte
	h.Sum(id[:0])
	return id
}

func (s *Source) unwrapHSM(w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	h, err := s.handle(w.KEKVersion)
	if err != nil {
		if errors.Is(err, ErrNoKey) {
			return secret.Key{}, fmt.Errorf("pkcs11 unwrap: %w: %w", err, keys.ErrNotMyKey)
		}
		return secret.Key{}, fmt.Errorf("pkcs11 unwrap: %w", err)
	}
	pt, err := s.tok.gcm(false, h, w.Data[:12], ad.Bytes(), w.Data[12:])
	if err != nil {
		clear(pt)
		if unavailable(err) {
			return secret.Key{}, fmt.Errorf("pkcs11 unwrap: %w: %w", err, keys.ErrUnavailable)
		}
		// SoftHSM reports a bad tag as CKR_GENERAL_ERROR: any refusal of
		// this record is an authentication failure.
		return secret.Key{}, fmt.Errorf("pkcs11 unwrap: the token refused the record (%v): %w", err, keys.ErrNotMyKey)
	}
	s.stats.unwraps.Add(1)
	return secret.FromBytes(pt)
}

// Freshness returns the freshness record, and false if none was ever set.
func (s *Source) Freshness() (keyring.Freshness, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.fresh, s.st.hasFresh
}

// SetFreshness records the latest catalog backup in the state file, with
// the keyring's rules: a zero time means now, and a lower sequence, or the
// same sequence with another hash, is keyring.ErrFreshnessRollback. A
// state file another process changed meanwhile is keyring.ErrModified
// (Reload, then try again).
func (s *Source) SetFreshness(f keyring.Freshness) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return fmt.Errorf("setting freshness: %w", ErrClosed)
	}
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	f.Time = f.Time.Round(0).UTC()
	if s.st.hasFresh {
		cur := s.st.fresh
		if f.Sequence < cur.Sequence || f.Sequence == cur.Sequence && f.Hash != cur.Hash {
			return fmt.Errorf("setting freshness: %w: sequence %d against the recorded %d", keyring.ErrFreshnessRollback, f.Sequence, cur.Sequence)
		}
	}
	next := s.st.clone()
	next.hasFresh, next.fresh = true, f
	if err := s.writeState(next, true); err != nil {
		return fmt.Errorf("setting freshness in %q: %w", s.path, err)
	}
	s.st = next
	return nil
}

// Reload reads the state file again after another process changed it. It
// refuses a file of another repository or one whose freshness record is
// older than the one in memory (keyring.ErrFreshnessRollback).
// afterStateKeyUnwrap, if set, runs when Reload has unwrapped a new state
// key, before it takes the source's lock again (tests).
var afterStateKeyUnwrap func()

func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return fmt.Errorf("reloading: %w", ErrClosed)
	}
	b, err := readStateFile(s.path)
	if err != nil {
		return fmt.Errorf("reloading %q: %w", s.path, err)
	}
	h, ct, err := parseStateFile(b)
	if err != nil {
		return err
	}
	if h.repo != s.st.repo {
		return fmt.Errorf("reloading %q: it now belongs to another repository", s.path)
	}
	skey := s.skey
	if string(h.raw[:stateHeaderLen-12]) != string(s.hdrRaw[:stateHeaderLen-12]) {
		s.mu.Unlock()
		skey, err = s.unwrapStateKey(h)
		if afterStateKeyUnwrap != nil {
			afterStateKeyUnwrap()
		}
		s.mu.Lock()
		if err != nil {
			return err
		}
		if s.shut {
			// Closed while the token unwrapped: Close wiped the keys it
			// held, and this one must not outlive it.
			skey.Wipe()
			return fmt.Errorf("reloading: %w", ErrClosed)
		}
	}
	st, err := openState(skey, h, ct)
	if err != nil {
		return err
	}
	if s.st.hasFresh && (!st.hasFresh || st.fresh.Sequence < s.st.fresh.Sequence) {
		return fmt.Errorf("reloading %q: %w", s.path, keyring.ErrFreshnessRollback)
	}
	if skey != s.skey {
		s.skey.Wipe()
		s.skey = skey
	}
	s.st, s.hdrRaw, s.disk = st, h.raw, sha256.Sum256(b)
	return nil
}

// Close wipes the cached keys and the state key and logs out of the
// token. Later operations fail with ErrClosed (keys.ErrUnavailable).
func (s *Source) Close() error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return nil
	}
	s.shut = true
	s.skey.Wipe()
	s.c.Purge()
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
	}
	return s.tok.Close()
}

// DestroyRootKeys deletes the objects of root key versions from the
// URI's token, logging in anew (the source that imported them may be
// closed already). It undoes a key ceremony or a restore whose repository
// could not be set up.
func DestroyRootKeys(u URI, pin []byte, versions []uint32) error {
	tok, err := OpenToken(u, pin)
	if err != nil {
		return err
	}
	defer tok.Close()
	var errs []error
	for _, v := range versions {
		errs = append(errs, tok.destroyKey(u.Object, v))
	}
	return errors.Join(errs...)
}

// CheckImport logs in to the URI's token with pin and checks that none of
// m's root key versions is there yet, without changing anything: a key
// ceremony runs it before it writes shares, so that a wrong PIN or an
// occupied label stops it before any share exists.
func CheckImport(u URI, pin []byte, m keyring.Material) error {
	tok, err := OpenToken(u, pin)
	if err != nil {
		return err
	}
	defer tok.Close()
	for _, r := range m.Roots {
		if r.Info.State == keyring.StateDestroyed {
			continue
		}
		_, err := tok.findKey(u.Object, r.Info.Version)
		switch {
		case err == nil:
			return fmt.Errorf("%w: label %q version %d on token %q", ErrKeyExists, u.Object, r.Info.Version, u.Token)
		case !errors.Is(err, ErrNoKey):
			return err
		}
	}
	return nil
}
