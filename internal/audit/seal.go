package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// Record is the audit directory's sealed record (RecordName): K_0 wrapped
// under the repository's root key, as internal/access wraps its table
// key, and the path of the off-box checkpoint copy, bound to K_0 by a
// MAC so that whoever edits the record to point the verifier at an
// empty file is found out.
type Record struct {
	Format      int    `json:"format"`
	Repo        string `json:"repo"` // hex repository id
	Source      uint8  `json:"source"`
	Alg         uint8  `json:"alg"`
	KEKVersion  uint32 `json:"kek_version"`
	Wrapped     []byte `json:"wrapped"`
	KeyCheck    []byte `json:"key_check"`
	Checkpoints string `json:"checkpoints"` // absolute path of the off-box copy
	ConfigMAC   string `json:"config_mac"`  // hex HMAC-SHA256 under HKDF(K_0, "holdfast/v1/audit-config") of repo and checkpoints
}

const recordFormat = 1

// objectLabel makes the fixed object id K_0's wrap names in its AD.
const objectLabel = "holdfast/v1/audit-k0"

// ErrRecord: the sealed record does not open under this key source, or
// does not match K_0 (one error for every layer, as with any unwrap).
var ErrRecord = errors.New("the audit log's sealed key does not open with this repository's keys")

// ObjectID is the object id bound into K_0's wrap: the first 16 bytes of
// SHA-256(objectLabel || repo). It is fixed per repository, so the AD
// (purpose system key, repository, root key version, this id) names the
// audit key and nothing else; random system object ids never equal it
// in practice.
func ObjectID(repo keys.ID) keys.ID {
	h := sha256.New()
	h.Write([]byte(objectLabel))
	h.Write(repo[:])
	var id keys.ID
	copy(id[:], h.Sum(nil))
	return id
}

func recordAD(repo keys.ID, kek uint32) keys.AD {
	return keys.AD{Purpose: keys.PurposeSystemKey, Repo: repo, KEKVersion: kek, Object: ObjectID(repo)}
}

// Seal wraps k0 under src's primary root key and returns the record,
// naming checkpoints (made absolute) as the off-box copy.
func Seal(ctx context.Context, src keys.Source, repo keys.ID, k0 secret.Key, checkpoints string) (Record, error) {
	abs, err := filepath.Abs(checkpoints)
	if err != nil {
		return Record{}, err
	}
	root := src.Primary()
	w, err := src.Wrap(ctx, root, recordAD(repo, root), k0)
	if err != nil {
		return Record{}, fmt.Errorf("audit: wrapping the audit key: %w", err)
	}
	kc, err := keys.KeyCheck(k0)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Format: recordFormat, Repo: hex.EncodeToString(repo[:]), Source: uint8(w.Source), Alg: uint8(w.Alg),
		KEKVersion: w.KEKVersion, Wrapped: w.Data, KeyCheck: kc, Checkpoints: abs}
	err = k0.Use(func(k []byte) error {
		rec.ConfigMAC = hex.EncodeToString(configMAC(k, rec))
		return nil
	})
	return rec, err
}

func configMAC(k0 []byte, rec Record) []byte {
	mk := derive(k0, configInfo)
	defer clear(mk)
	h := hmac.New(sha256.New, mk)
	h.Write([]byte(rec.Repo))
	h.Write([]byte{0})
	h.Write([]byte(rec.Checkpoints))
	return h.Sum(nil)
}

// ErrRecordPath: the record's checkpoint path is not the one K_0 was
// sealed with (its config MAC does not match): the record was edited.
var ErrRecordPath = errors.New("the audit record's checkpoint path is not the one its key was sealed with (the record was edited)")

// Unseal opens rec's K_0 with src and checks it against the key check
// and the record's config MAC. The caller wipes the key.
func Unseal(ctx context.Context, src keys.Source, repo keys.ID, rec Record) (secret.Key, error) {
	k, pathOK, err := UnsealKey(ctx, src, repo, rec)
	if err != nil {
		return secret.Key{}, err
	}
	if !pathOK {
		k.Wipe()
		return secret.Key{}, fmt.Errorf("audit: %w: %w", ErrRecordPath, ErrRecord)
	}
	return k, nil
}

// UnsealKey opens rec's K_0 with src and checks it against the key
// check; pathOK reports whether the record's config MAC vouches for its
// checkpoint path. A verifier checks the log with a K_0 whose path was
// changed (and reports the change); nothing may follow that path. The
// caller wipes the key.
func UnsealKey(ctx context.Context, src keys.Source, repo keys.ID, rec Record) (k secret.Key, pathOK bool, err error) {
	if rec.Format != recordFormat || rec.Repo != hex.EncodeToString(repo[:]) {
		return secret.Key{}, false, fmt.Errorf("audit: the record is of another repository: %w", ErrRecord)
	}
	w := keys.Wrapped{Source: keys.SourceKind(rec.Source), Alg: keys.Alg(rec.Alg), KEKVersion: rec.KEKVersion, Data: rec.Wrapped}
	k, err = src.Unwrap(ctx, w, recordAD(repo, rec.KEKVersion))
	if err != nil {
		return secret.Key{}, false, fmt.Errorf("audit: unwrapping the audit key: %w: %w", ErrRecord, err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil || subtle.ConstantTimeCompare(kc, rec.KeyCheck) != 1 {
		k.Wipe()
		return secret.Key{}, false, fmt.Errorf("audit: the key check does not match: %w", ErrRecord)
	}
	return k, pathMACOK(k, rec), nil
}

// pathMACOK reports whether rec's config MAC is K_0's over its
// repository and checkpoint path.
func pathMACOK(k0 secret.Key, rec Record) bool {
	ok := false
	_ = k0.Use(func(b []byte) error {
		want, good := lowerHex(rec.ConfigMAC, sha256.Size)
		ok = good && hmac.Equal(want, configMAC(b, rec))
		return nil
	})
	return ok
}

// Rewrap wraps dir's K_0 (k0, from Unseal) again under src's primary
// root key version if rec is wrapped under another, appends the new
// record to the off-box copy, and replaces the home's record: what a
// root key rotation needs before the old version is retired. It reports
// whether it rewrote the record. It refuses a record whose checkpoint
// path K_0 does not vouch for (sealing it again would launder the edit).
func Rewrap(ctx context.Context, dir string, src keys.Source, repo keys.ID, rec Record, k0 secret.Key) (bool, error) {
	if !pathMACOK(k0, rec) {
		return false, fmt.Errorf("audit: %w: %w", ErrRecordPath, ErrRecord)
	}
	if rec.KEKVersion == src.Primary() {
		return false, nil
	}
	nrec, err := Seal(ctx, src, repo, k0, rec.Checkpoints)
	if err != nil {
		return false, err
	}
	b, err := marshalRecord(nrec)
	if err != nil {
		return false, err
	}
	// The off-box copy first: a home record the copy lacks would be lost
	// with the home's.
	if err := appendOffBox(rec.Checkpoints, [][]byte{recordLine(b)}); err != nil {
		return false, err
	}
	return true, atomicfile.WriteFile(filepath.Join(dir, RecordName), b, atomicfile.Options{Mode: 0o600})
}

// A record line in the off-box copy is {"record":<the record as in
// RecordName>}: the sealed record is not secret, and a copy off the box
// lets verify open K_0 when the home's is deleted or damaged. Create
// and Rewrap append one; the newest that opens is used.
const recordLinePrefix = `{"record":`

func recordLine(rec []byte) []byte {
	return append(append([]byte(recordLinePrefix), rec...), '}')
}

// parseRecordLine reads a record line; ok is false if line is not one,
// in its one encoding.
func parseRecordLine(line []byte) (rec Record, ok bool) {
	if !bytes.HasPrefix(line, []byte(recordLinePrefix)) || !bytes.HasSuffix(line, []byte{'}'}) {
		return Record{}, false
	}
	inner := line[len(recordLinePrefix) : len(line)-1]
	d := json.NewDecoder(bytes.NewReader(inner))
	d.DisallowUnknownFields()
	if err := d.Decode(&rec); err != nil || d.More() || rec.Format != recordFormat {
		return Record{}, false
	}
	canon, err := json.Marshal(rec)
	if err != nil || !bytes.Equal(canon, inner) {
		return Record{}, false
	}
	return rec, true
}
