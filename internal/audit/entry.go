package audit

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/logtext"
)

// Kind says what an entry records.
type Kind string

const (
	KindKey        Kind = "key"        // a key operation (keys.Op)
	KindObject     Kind = "object"     // a gateway operation on a bucket or object
	KindRefusal    Kind = "refusal"    // an operation refused: access denied, or an actor cut off
	KindAnomaly    Kind = "anomaly"    // an actor's key use far above its baseline
	KindCheckpoint Kind = "checkpoint" // seq and head hash, copied off the box
)

// Entry is one line of the log, as stored: the fields in this order, as
// encoding/json writes them, with no space, then a newline. That is the
// only valid encoding of an entry; the verifier refuses any other.
type Entry struct {
	Seq     uint64    `json:"seq"`  // 0 (the genesis checkpoint), 1, 2… in file order
	Time    time.Time `json:"time"` // UTC
	Kind    Kind      `json:"kind"`
	Actor   string    `json:"actor,omitempty"`   // access key id, "cli", a client's name
	Op      string    `json:"op"`                // create, rotate…, PutObject, GetObject…
	Subject string    `json:"subject,omitempty"` // bucket or bucket/key
	Status  string    `json:"status,omitempty"`  // ok, or an error code
	Detail  string    `json:"detail,omitempty"`
	// Prev is the hex SHA-256 of the previous line without its newline
	// ("" on line 1). On a checkpoint it is the head the checkpoint vouches
	// for.
	Prev string `json:"prev"`
	// MAC is the hex HMAC-SHA256, under the MAC key of K_seq, of the line
	// as encoded with MAC empty (and so left out).
	MAC string `json:"mac,omitempty"`
}

// maxLine bounds one line: a longer one is damage, not an entry.
const maxLine = 64 << 10

const (
	ratchetInfo = "holdfast/v1/audit-ratchet"
	macInfo     = "holdfast/v1/audit-mac"
	configInfo  = "holdfast/v1/audit-config"
)

// ratchet returns K_{n+1} from K_n.
func ratchet(k []byte) []byte {
	return derive(k, ratchetInfo)
}

func derive(k []byte, info string) []byte {
	out, err := hkdf.Key(sha256.New, k, nil, info, len(k))
	if err != nil {
		// hkdf.Key fails only for a length over 255 hashes, never for
		// an input: 32 bytes is fixed here.
		panic("audit: hkdf: " + err.Error())
	}
	return out
}

// encode returns the line of e (without a newline), with its MAC under
// ratchet key k computed here.
func encode(e Entry, k []byte) ([]byte, error) {
	e.Time = e.Time.UTC()
	// Text from outside (a client's name, a key, an error) is bounded, so
	// that every entry fits in a line however it is escaped (six bytes per
	// byte at worst): an entry too long to write would fail the batch it
	// was written with, other clients' key releases included.
	e.Actor, e.Op, e.Status = logtext.Clip(e.Actor, 256), logtext.Clip(e.Op, 128), logtext.Clip(e.Status, 128)
	e.Subject, e.Detail = logtext.Clip(e.Subject, 4096), logtext.Clip(e.Detail, 4096)
	e.MAC = ""
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	e.MAC = hex.EncodeToString(mac(k, body))
	line, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if len(line) >= maxLine {
		return nil, fmt.Errorf("an audit entry of %d bytes is too long", len(line))
	}
	return line, nil
}

func mac(k, body []byte) []byte {
	mk := derive(k, macInfo)
	defer clear(mk)
	h := hmac.New(sha256.New, mk)
	h.Write(body)
	return h.Sum(nil)
}

// parse decodes one line (without its newline); why says what is wrong
// with it. It checks the encoding, not the MAC.
func parse(line []byte) (e Entry, why string) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil {
		return e, "not an entry"
	}
	if d.More() {
		return e, "not an entry (trailing data)"
	}
	canon, err := json.Marshal(withUTC(e))
	if err != nil || !bytes.Equal(canon, line) {
		return e, "not in the log's encoding (edited by hand?)"
	}
	return e, ""
}

func withUTC(e Entry) Entry { e.Time = e.Time.UTC(); return e }

// macOK reports whether e, as parsed from its line, carries the MAC of
// ratchet key k, in its one encoding (lower-case hex, as encode writes).
func macOK(e Entry, k []byte) bool {
	got, ok := lowerHex(e.MAC, sha256.Size)
	if !ok {
		return false
	}
	e.MAC = ""
	body, err := json.Marshal(withUTC(e))
	if err != nil {
		return false
	}
	return hmac.Equal(got, mac(k, body))
}

// lowerHex decodes s, which must be exactly n bytes in lower-case hex:
// the one encoding encode writes (hex.DecodeString takes upper case too).
func lowerHex(s string, n int) ([]byte, bool) {
	if len(s) != 2*n {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, false
		}
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

func hashLine(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// ParseCheckpoint reads a checkpoint line (without its newline), as a
// copy of one (a key server's client, docs/audit.md) receives it: it
// must be an entry in its one encoding, of kind checkpoint. It checks no
// MAC (that takes K_0: Verify). ok is false for anything else.
func ParseCheckpoint(line []byte) (seq uint64, ok bool) {
	if len(line) == 0 || len(line) >= maxLine {
		return 0, false
	}
	e, why := parse(line)
	if why != "" || e.Kind != KindCheckpoint {
		return 0, false
	}
	return e.Seq, true
}
