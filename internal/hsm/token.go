package hsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

var (
	// ErrWrongPIN: the token refused the PIN (CKR_PIN_INCORRECT).
	ErrWrongPIN = errors.New("wrong PIN for the PKCS#11 token")
	// ErrPINLocked: the token locked the PIN after too many wrong tries.
	ErrPINLocked = errors.New("the PKCS#11 token's PIN is locked")
	// ErrNoToken: no token with the URI's label is present.
	ErrNoToken = errors.New("no PKCS#11 token with that label")
	// ErrNoKey: the token holds no key object for a root key version.
	ErrNoKey = errors.New("the PKCS#11 token holds no such root key")
	// ErrAmbiguousToken: more than one token has the URI's label.
	ErrAmbiguousToken = errors.New("more than one PKCS#11 token has that label")
	// ErrKeyExists: an import found a key object already there.
	ErrKeyExists = errors.New("the PKCS#11 token already holds a root key with that label and version")
)

// modules are the loaded PKCS#11 libraries, by path: a library is
// initialised once per process (a second C_Initialize fails) and
// finalised when its last user closes.
var (
	modMu   sync.Mutex
	modules = map[string]*module{}
)

type module struct {
	path string
	ctx  *pkcs11.Ctx
	dec  *cDecrypt // the module's C_Decrypt, or nil: ctx.Decrypt (decrypt.go)
	refs int
}

func loadModule(path string) (*module, error) {
	modMu.Lock()
	defer modMu.Unlock()
	if m, ok := modules[path]; ok {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("loading PKCS#11 module %q failed (missing, or not a PKCS#11 library): %w", path, keys.ErrUnavailable)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("initialising PKCS#11 module %q: %w", path, err)
	}
	m := &module{path: path, ctx: ctx, dec: openDecrypt(path), refs: 1}
	modules[path] = m
	return m, nil
}

func (m *module) release() {
	modMu.Lock()
	defer modMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules, m.path)
	_ = m.ctx.Finalize()
	m.dec.close()
	m.ctx.Destroy()
}

func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// maxSessions bounds the sessions a Token opens: PKCS#11 sessions run one
// operation at a time, so concurrent wraps need several.
const maxSessions = 4

// Token is a logged-in PKCS#11 token: a small pool of sessions on the
// slot whose token has the URI's label. Safe for concurrent use.
type Token struct {
	mod   *module
	slot  uint
	label string
	pool  chan pkcs11.SessionHandle
	mu    sync.Mutex
	open  int
	shut  bool
	// closing is closed when Close begins: an operation waiting for a
	// session then gives up, where it would otherwise wait for ever once
	// Close has taken every session.
	closing chan struct{}
}

// beforeSessionWait, if set, runs when an operation is about to wait for
// a session (tests).
var beforeSessionWait func()

// OpenToken loads the URI's module, finds the token by its label and logs
// in as the user with pin. A wrong PIN is ErrWrongPIN. The caller clears
// pin; the module's API takes it as a Go string, which cannot be wiped,
// so it stays in the heap until collected (docs/keys.md, "PIN handling").
func OpenToken(u URI, pin []byte) (*Token, error) {
	m, err := loadModule(u.ModulePath)
	if err != nil {
		return nil, err
	}
	t := &Token{mod: m, label: u.Token, pool: make(chan pkcs11.SessionHandle, maxSessions), closing: make(chan struct{})}
	if t.slot, err = findSlot(m.ctx, u.Token); err != nil {
		m.release()
		return nil, err
	}
	sh, err := t.session()
	if err != nil {
		m.release()
		return nil, err
	}
	err = m.ctx.Login(sh, pkcs11.CKU_USER, string(pin))
	switch {
	case err == nil, isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		t.put(sh)
		return t, nil
	case isCode(err, pkcs11.CKR_PIN_INCORRECT):
		err = fmt.Errorf("%w %q", ErrWrongPIN, u.Token)
	case isCode(err, pkcs11.CKR_PIN_LOCKED):
		err = fmt.Errorf("%w (token %q): unlock it with the SO PIN", ErrPINLocked, u.Token)
	default:
		err = fmt.Errorf("logging in to PKCS#11 token %q: %w", u.Token, err)
	}
	_ = m.ctx.CloseSession(sh)
	m.release()
	return nil, err
}

func findSlot(ctx *pkcs11.Ctx, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("listing PKCS#11 slots: %w: %w", err, keys.ErrUnavailable)
	}
	// Every slot is looked at: the label must name one token. Otherwise
	// the slot order, which the module may change between runs, would
	// choose whose key objects are used, imported or destroyed.
	var found []uint
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err == nil && ti.Label == label {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w %q (%d slots with tokens): %w", ErrNoToken, label, len(slots), keys.ErrUnavailable)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%w: %d tokens are labelled %q (slots %v); give each token a label of its own: %w", ErrAmbiguousToken, len(found), label, found, keys.ErrUnavailable)
}

// session takes a session from the pool, opening one if the pool is
// empty and fewer than maxSessions are open, else waiting for one.
func (t *Token) session() (pkcs11.SessionHandle, error) {
	select {
	case sh := <-t.pool:
		return sh, nil
	default:
	}
	t.mu.Lock()
	if t.shut {
		t.mu.Unlock()
		return 0, fmt.Errorf("PKCS#11 token closed: %w", keys.ErrUnavailable)
	}
	if t.open < maxSessions {
		t.open++
		t.mu.Unlock()
		sh, err := t.mod.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.mu.Lock()
			t.open--
			t.mu.Unlock()
			return 0, fmt.Errorf("opening a PKCS#11 session: %w: %w", err, keys.ErrUnavailable)
		}
		return sh, nil
	}
	t.mu.Unlock()
	if beforeSessionWait != nil {
		beforeSessionWait()
	}
	select {
	case sh := <-t.pool:
		return sh, nil
	case <-t.closing:
		return 0, fmt.Errorf("PKCS#11 token closed: %w", keys.ErrUnavailable)
	}
}

func (t *Token) put(sh pkcs11.SessionHandle) { t.pool <- sh }

// do runs fn on a pooled session.
func (t *Token) do(fn func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	sh, err := t.session()
	if err != nil {
		return err
	}
	defer t.put(sh)
	return fn(t.mod.ctx, sh)
}

// Close logs out, closes every session and releases the module.
func (t *Token) Close() error {
	t.mu.Lock()
	if t.shut {
		t.mu.Unlock()
		return nil
	}
	t.shut = true
	close(t.closing)
	n := t.open
	t.mu.Unlock()
	for range n {
		sh := <-t.pool
		_ = t.mod.ctx.CloseSession(sh)
	}
	t.mod.release()
	return nil
}

// versionID is the CKA_ID of root key version v: four big-endian bytes.
func versionID(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// findKey returns the handle of root key version v under label.
func (t *Token) findKey(label string, v uint32) (pkcs11.ObjectHandle, error) {
	var found []pkcs11.ObjectHandle
	err := t.do(func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		tmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, versionID(v)),
		}
		if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
			return err
		}
		var err error
		found, _, err = ctx.FindObjects(sh, 2)
		if ferr := ctx.FindObjectsFinal(sh); err == nil {
			err = ferr
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("finding root key %q v%d: %w: %w", label, v, err, keys.ErrUnavailable)
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: label %q version %d on token %q", ErrNoKey, label, v, t.label)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("token %q holds two key objects with label %q and version %d; remove the stray one", t.label, label, v)
}

// importKey creates root key version v under label from k: a token
// object, private, sensitive and not extractable, usable only to encrypt
// and decrypt. The material passes through the module's memory once.
func (t *Token) importKey(label string, v uint32, k secret.Key) error {
	if _, err := t.findKey(label, v); err == nil {
		return fmt.Errorf("%w: label %q version %d on token %q", ErrKeyExists, label, v, t.label)
	} else if !errors.Is(err, ErrNoKey) {
		return err
	}
	return k.Use(func(kb []byte) error {
		val := make([]byte, len(kb))
		copy(val, kb)
		defer clear(val)
		return t.do(func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
			_, err := ctx.CreateObject(sh, rootKeyTemplate(label, v, val))
			if err != nil {
				return fmt.Errorf("importing root key v%d into token %q: %w", v, t.label, err)
			}
			return nil
		})
	})
}

// rootKeyTemplate is the template of a root key object (docs/keys.md,
// "PKCS#11 objects").
func rootKeyTemplate(label string, v uint32, value []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, versionID(v)),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	}
}

// destroyKey deletes root key version v's object from the token.
func (t *Token) destroyKey(label string, v uint32) error {
	h, err := t.findKey(label, v)
	if errors.Is(err, ErrNoKey) {
		return nil
	}
	if err != nil {
		return err
	}
	return t.do(func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error { return ctx.DestroyObject(sh, h) })
}

// gcm runs one AES-256-GCM operation inside the token under key h: seal
// (encrypt) or open (decrypt) in with nonce iv and associated data aad.
func (t *Token) gcm(seal bool, h pkcs11.ObjectHandle, iv, aad, in []byte) ([]byte, error) {
	var out []byte
	err := t.do(func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		p := pkcs11.NewGCMParams(iv, aad, 128)
		defer p.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}
		var err error
		if seal {
			if err = ctx.EncryptInit(sh, mech, h); err == nil {
				out, err = ctx.Encrypt(sh, in)
			}
		} else {
			if err = ctx.DecryptInit(sh, mech, h); err == nil {
				if t.mod.dec != nil {
					out, err = t.mod.dec.decrypt(sh, in)
				} else {
					out, err = ctx.Decrypt(sh, in)
				}
			}
		}
		return err
	})
	return out, err
}

// unavailable reports whether err means the token cannot answer now (as
// opposed to refusing this operation).
func unavailable(err error) bool {
	for _, c := range []uint{pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY} {
		if isCode(err, c) {
			return true
		}
	}
	return errors.Is(err, keys.ErrUnavailable)
}
