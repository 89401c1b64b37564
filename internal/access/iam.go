package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/s3err"
)

// IAM is the table as versitygw's IAM service (embedgw.Config.IAMService).
// It is read-only: keys are made and revoked with `holdfast access`, so
// the mutations fail. It implements auth.SigningKeyProvider, so versitygw
// asks it for the SigV4 signing key of one day, region and service and
// never sees a secret; the accounts it returns never carry one.
//
// Roles: an admin key is auth.RoleUserPlus (it may create buckets; its
// other rights come from the bucket policies like everyone's), every
// other key auth.RoleUser. No key is auth.RoleAdmin, which would bypass
// the bucket policies and open versitygw's admin API.
type IAM struct{ t *Table }

var (
	_ auth.IAMService         = (*IAM)(nil)
	_ auth.SigningKeyProvider = (*IAM)(nil)
)

// IAM returns the table's IAM service for versitygw.
func (t *Table) IAM() *IAM { return &IAM{t: t} }

func account(e *entry) auth.Account {
	role := auth.RoleUser
	if e.key.Admin {
		role = auth.RoleUserPlus
	}
	return auth.Account{Access: e.key.ID, Role: role}
}

// errReadOnly answers every attempt to change accounts through versitygw.
var errReadOnly = s3err.GetAPIError(s3err.ErrAdminMethodNotSupported)

// CreateAccount fails: keys are made with `holdfast access add`.
func (*IAM) CreateAccount(auth.Account) error { return errReadOnly }

// UpdateUserAccount fails: keys are not changed, only revoked and made.
func (*IAM) UpdateUserAccount(string, auth.MutableProps) error { return errReadOnly }

// DeleteUserAccount fails: keys are revoked with `holdfast access revoke`.
func (*IAM) DeleteUserAccount(string) error { return errReadOnly }

// Shutdown does nothing: the table belongs to whoever opened it.
func (*IAM) Shutdown() error { return nil }

// GetUserAccount returns the account of access key id, without its
// secret; auth.ErrNoSuchUser (itself, as versitygw compares it) if there
// is no such key or its record does not authenticate.
func (i *IAM) GetUserAccount(id string) (auth.Account, error) {
	e, err := i.t.lookup(id)
	if err != nil {
		return auth.Account{}, err
	}
	if e == nil {
		return auth.Account{}, auth.ErrNoSuchUser
	}
	return account(e), nil
}

// ResolveAccounts returns the ids among ids that name no access key.
func (i *IAM) ResolveAccounts(ids []string) ([]string, error) {
	s, err := i.t.check()
	if err != nil {
		return nil, err
	}
	missing := []string{}
	for _, id := range ids {
		if s.keys[id] == nil {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// ListUserAccounts returns every usable key's account, without secrets.
func (i *IAM) ListUserAccounts() ([]auth.Account, error) {
	s, err := i.t.check()
	if err != nil {
		return nil, err
	}
	out := make([]auth.Account, 0, len(s.keys))
	for _, e := range s.keys {
		out = append(out, account(e))
	}
	return out, nil
}

// DeriveSigningKey returns the SigV4 signing key of access key id for one
// day (yyyymmdd), region and service — HMAC-SHA256 applied in turn to
// those and "aws4_request" from "AWS4" and the secret — and the key's
// account, without its secret. A session token is refused: Holdfast issues
// no temporary credentials.
func (i *IAM) DeriveSigningKey(id, sessionToken, date, region, service string) ([]byte, auth.Account, error) {
	if sessionToken != "" {
		return nil, auth.Account{}, auth.ErrInvalidSessionToken
	}
	e, err := i.t.lookup(id)
	if err != nil {
		return nil, auth.Account{}, err
	}
	if e == nil {
		return nil, auth.Account{}, auth.ErrNoSuchUser
	}
	var key []byte
	err = i.t.withSecret(e, func(sec []byte) {
		key = signingKey(sec, date, region, service)
	})
	if errors.Is(err, ErrSealed) {
		return nil, auth.Account{}, fmt.Errorf("access key %q: %w", id, err)
	}
	if err != nil {
		// The record opened when the table was read; it should now too.
		i.t.log.Error("access key secret does not open; refusing", "id", id, "err", err)
		return nil, auth.Account{}, fmt.Errorf("access key %q is unusable", id)
	}
	return key, account(e), nil
}

// signingKey is SigV4's key derivation (AWS Signature Version 4,
// "Derive a signing key").
func signingKey(sec []byte, date, region, service string) []byte {
	k := make([]byte, 0, 4+len(sec))
	k = append(append(k, "AWS4"...), sec...)
	for _, s := range []string{date, region, service, "aws4_request"} {
		h := hmac.New(sha256.New, k)
		h.Write([]byte(s))
		next := h.Sum(nil)
		clear(k) // each intermediate key is a credential too
		k = next
	}
	return k
}
