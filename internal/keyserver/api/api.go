// Package api is the key server's wire protocol: JSON bodies over HTTPS
// with mutual TLS 1.3 (docs/keyserver.md, "API"). Both the server
// (internal/keyserver) and the client (internal/keys/remote) use these
// types, so the two cannot drift apart.
//
// Key material crosses the wire only inside TLS, as the Key fields below:
// the caller copies it into a secret.Key at once and clears the slice.
package api

import (
	"time"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/posture"
)

// Paths of the API. Every request is a POST with a JSON body, except
// Versions and FreshnessGet (GET, no body).
const (
	PathVersions      = "/v1/versions"
	PathWrap          = "/v1/wrap"
	PathUnwrap        = "/v1/unwrap"
	PathFreshness     = "/v1/freshness" // GET reads, POST sets
	PathDataKeyWrap   = "/v1/datakey/wrap"
	PathDataKeyUnwrap = "/v1/datakey/unwrap"
	PathBucketKeyMake = "/v1/bucketkey/make"
	// PathNonce (GET) issues a single-use attestation nonce (Nonce).
	PathNonce = "/v1/nonce"
)

// HeaderAuditCheckpoint: every API answer of a key server that keeps an
// audit log carries its newest checkpoint line, byte for byte as in the
// log (seq, time, the head hash it vouches for, its MAC: no secret). A
// client keeps a copy of those it has not seen, so that a log cut at its
// tail together with the server's own off-box copy is still found
// (docs/keyserver.md, "Checkpoints to clients").
const HeaderAuditCheckpoint = "Holdfast-Audit-Checkpoint"

// Operations a client may be granted (clients.json "ops").
const (
	// OpWrap: root-level wraps, making a bucket key on the server, and
	// setting the freshness record.
	OpWrap   = "wrap"
	OpUnwrap = "unwrap" // root-level unwraps (bucket and system keys)
	OpData   = "data"   // data keys under a bucket key the server opens itself
	// OpAudit, with OpUnwrap, lets a client open the audit log's K_0 (a
	// system key; internal/audit). '*' alone does not.
	OpAudit = "audit"
)

// Error codes: the "code" of an error body. The client maps them to its
// errors; "message" is for people.
const (
	CodeNotMyKey    = "not-my-key"  // keys.ErrNotMyKey
	CodeRefused     = "refused"     // not authorized for this bucket, version or operation
	CodeBadRequest  = "bad-request" // malformed
	CodeUnavailable = "unavailable" // the server cannot answer now (log, keyring)
	CodeRollback    = "rollback"    // keyring.ErrFreshnessRollback
	CodeModified    = "modified"    // keyring.ErrModified
)

// Error is the body of every non-2xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Version is one root key version (keyring.RootKeyInfo).
type Version struct {
	Version uint32    `json:"version"`
	State   uint8     `json:"state"` // keyring.State
	Created time.Time `json:"created"`
}

// Versions answers PathVersions.
type Versions struct {
	Repo     keys.ID   `json:"repo"`
	Primary  uint32    `json:"primary"`
	Versions []Version `json:"versions"`
	Client   string    `json:"client"` // the name the server knows this client by
}

// WrapRequest asks for Key to be sealed under root key Version with AD.
type WrapRequest struct {
	Version uint32  `json:"version"`
	AD      keys.AD `json:"ad"`
	Key     []byte  `json:"key"`
}

// WrapResponse carries the wrapped key.
type WrapResponse struct {
	Wrapped keys.Wrapped `json:"wrapped"`
}

// Claims are what a client says of its host with every request that
// releases a key (UnwrapRequest, DataKeyUnwrapRequest,
// MakeBucketKeyRequest): its posture report, and, when the server's
// release policy asks it of this client, attestation evidence for a
// nonce from PathNonce. The server judges them (docs/keyserver.md,
// "Posture and attestation").
type Claims struct {
	Posture     *posture.Report  `json:"posture,omitempty"`
	Attestation *attest.Evidence `json:"attestation,omitempty"`
}

// SetClaims sets the claims of a request that embeds Claims.
func (c *Claims) SetClaims(x Claims) { *c = x }

// Nonce answers PathNonce: 32 random bytes the server accepts once, in
// evidence made before Expires.
type Nonce struct {
	Nonce   []byte    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

// UnwrapRequest asks for Wrapped to be opened with AD.
type UnwrapRequest struct {
	Wrapped keys.Wrapped `json:"wrapped"`
	AD      keys.AD      `json:"ad"`
	Claims
}

// KeyResponse carries an unwrapped key.
type KeyResponse struct {
	Key []byte `json:"key"`
}

// Freshness is keyring.Freshness on the wire.
type Freshness struct {
	Has      bool      `json:"has"`
	Sequence uint64    `json:"sequence"`
	Hash     [32]byte  `json:"hash"`
	Time     time.Time `json:"time"`
}

// BucketKey is a bucket key record as the catalog keeps it
// (catalog.BucketKey): the server opens it under its root key itself, so
// the bucket key never leaves the server.
type BucketKey struct {
	Bucket   keys.ID      `json:"bucket"`
	Version  uint32       `json:"version"`
	Wrapped  keys.Wrapped `json:"wrapped"`
	KeyCheck []byte       `json:"key_check"`
}

// DataKeyWrapRequest asks for an object's data key to be wrapped under
// the bucket key in BucketKey (AD's purpose is keys.PurposeDataKey).
type DataKeyWrapRequest struct {
	BucketKey BucketKey `json:"bucket_key"`
	AD        keys.AD   `json:"ad"`
	Key       []byte    `json:"key"`
}

// DataKeyWrapResponse carries the data key's wrap (keys.AlgHKDFGCMCommit).
type DataKeyWrapResponse struct {
	Alg  keys.Alg `json:"alg"`
	Data []byte   `json:"data"`
}

// DataKeyUnwrapRequest asks for a data key wrapped under the bucket key.
type DataKeyUnwrapRequest struct {
	BucketKey BucketKey `json:"bucket_key"`
	AD        keys.AD   `json:"ad"`
	Alg       keys.Alg  `json:"alg"`
	Data      []byte    `json:"data"`
	Claims
}

// MakeBucketKeyRequest asks the server to make a new bucket key version
// and wrap it under the root key version AD names (AD.KEKVersion) with
// AD, whose purpose is keys.PurposeBucketKey. The key never leaves the
// server: the client gets only what the catalog keeps of it.
type MakeBucketKeyRequest struct {
	AD keys.AD `json:"ad"`
	Claims
}

// MakeBucketKeyResponse carries the new bucket key's wrap under the root
// key (source kind key server) and its key check (keys.KeyCheck).
type MakeBucketKeyResponse struct {
	Wrapped  keys.Wrapped `json:"wrapped"`
	KeyCheck []byte       `json:"key_check"`
}
