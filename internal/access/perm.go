package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/repo"
)

// ErrInvalid is wrapped by every error about a bad key specification: a
// bad bucket name, permission letter, key name or id.
var ErrInvalid = errors.New("invalid access key specification")

// Perm is a set of permissions on a bucket.
type Perm uint8

const (
	// Read: GetObject, HeadObject, GetObjectAttributes, GetObjectTagging.
	Read Perm = 1 << iota
	// Write: PutObject (overwriting too), CopyObject into the bucket, the
	// multipart calls (create, upload part, complete, abort, list parts),
	// PutObjectTagging and DeleteObjectTagging.
	Write
	// List: HeadBucket, ListObjects(V2), ListMultipartUploads,
	// GetBucketLocation; and the bucket shows in ListBuckets.
	List
	// Delete: DeleteObject, DeleteObjects.
	Delete
	// Inbox: PutObject (and multipart) of keys that do not exist yet, with
	// tags (x-amz-tagging) if it likes; no overwrite, get, head, list, or
	// tagging of existing objects. A key with Inbox on a bucket holds
	// nothing else there.
	Inbox
)

// letters are the PERMS letters of Read, Write, List and Delete.
var letters = []struct {
	p Perm
	c byte
}{{Read, 'r'}, {Write, 'w'}, {List, 'l'}, {Delete, 'd'}}

func letterPerm(c byte) Perm {
	for _, l := range letters {
		if l.c == c {
			return l.p
		}
	}
	return 0
}

// String is "inbox", or the letters of the set in the order rwld.
func (p Perm) String() string {
	if p == Inbox {
		return "inbox"
	}
	var b strings.Builder
	for _, l := range letters {
		if p&l.p != 0 {
			b.WriteByte(l.c)
		}
	}
	if p&Inbox != 0 {
		b.WriteString("+inbox")
	}
	return b.String()
}

// ParsePerms reads a combination of the letters r, w, l and d, or the word
// "inbox".
func ParsePerms(s string) (Perm, error) {
	if s == "inbox" {
		return Inbox, nil
	}
	if s == "" {
		return 0, fmt.Errorf("%w: empty permissions (use a combination of r, w, l, d)", ErrInvalid)
	}
	var p Perm
	for i := 0; i < len(s); i++ {
		q := letterPerm(s[i])
		if q == 0 {
			return 0, fmt.Errorf("%w: permissions %q: %q is not one of r, w, l, d", ErrInvalid, s, s[i:i+1])
		}
		p |= q
	}
	return p, nil
}

// AllBuckets is the bucket name of a grant that applies to every bucket.
const AllBuckets = "*"

// Grant is a set of permissions on one bucket, or on every bucket
// (AllBuckets).
type Grant struct {
	Bucket string `json:"bucket"`
	Perms  Perm   `json:"perms"`
}

func (g Grant) String() string { return g.Bucket + ":" + g.Perms.String() }

// ParseGrant reads BUCKET:PERMS (see ParsePerms); BUCKET may be "*".
func ParseGrant(s string) (Grant, error) {
	b, ps, ok := strings.Cut(s, ":")
	if !ok {
		return Grant{}, fmt.Errorf("%w: %q is not BUCKET:PERMS", ErrInvalid, s)
	}
	p, err := ParsePerms(ps)
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Bucket: b, Perms: p}
	return g, g.validate()
}

func (g Grant) validate() error {
	if g.Bucket != AllBuckets {
		if err := repo.ValidateBucket(g.Bucket); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	switch {
	case g.Perms == 0:
		return fmt.Errorf("%w: no permissions on %q", ErrInvalid, g.Bucket)
	case g.Perms&^(Read|Write|List|Delete|Inbox) != 0:
		return fmt.Errorf("%w: unknown permission bits %#x", ErrInvalid, uint8(g.Perms))
	case g.Perms&Inbox != 0 && g.Perms != Inbox:
		return fmt.Errorf("%w: an inbox key holds no other permission on the same bucket (%q)", ErrInvalid, g.Bucket)
	}
	return nil
}

// Spec describes a new access key.
type Spec struct {
	// Name says whom the key is for (1 to 64 printable characters).
	Name string
	// Admin keys may create and delete buckets and hold every permission
	// on every bucket.
	Admin bool
	// Grants are merged per bucket; at least one unless Admin.
	Grants []Grant
}

// Validate checks s as Add will: errors wrap ErrInvalid.
func (s Spec) Validate() error {
	_, err := s.normalize()
	return err
}

// normalize checks s and returns its grants merged per bucket, sorted by
// bucket name ("*" first).
func (s Spec) normalize() ([]Grant, error) {
	if err := validateName(s.Name); err != nil {
		return nil, err
	}
	merged := map[string]Perm{}
	for _, g := range s.Grants {
		if err := g.validate(); err != nil {
			return nil, err
		}
		merged[g.Bucket] |= g.Perms
	}
	if len(merged) == 0 && !s.Admin {
		return nil, fmt.Errorf("%w: a key needs a permission on a bucket, an inbox or admin", ErrInvalid)
	}
	out := make([]Grant, 0, len(merged))
	for b, p := range merged {
		g := Grant{Bucket: b, Perms: p}
		if err := g.validate(); err != nil { // inbox merged with another permission
			return nil, err
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Grant) int { return strings.Compare(a.Bucket, b.Bucket) })
	return out, nil
}

func validateName(n string) error {
	if n == "" || utf8.RuneCountInString(n) > 64 || !utf8.ValidString(n) {
		return fmt.Errorf("%w: a key name is 1 to 64 characters of UTF-8 text", ErrInvalid)
	}
	for _, r := range n {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: key name %q holds a non-printing character", ErrInvalid, n)
		}
	}
	return nil
}
