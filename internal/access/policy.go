package access

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/repo"
)

// everything is what an admin key holds on every bucket.
const everything = Read | Write | List | Delete

// perms returns what id may do on bucket: its grant there joined with its
// grant on every bucket; everything for an admin; nothing for an unknown
// or damaged key.
func (s *snapshot) perms(id, bucket string) Perm {
	e := s.keys[id]
	if e == nil {
		return 0
	}
	if e.key.Admin {
		return everything
	}
	return e.grants[bucket] | e.grants[AllBuckets]
}

// permsNow is perms on a snapshot within MaxStale; nothing when the table
// cannot be read (checks fail closed).
func (t *Table) permsNow(id, bucket string) Perm {
	s, err := t.check()
	if err != nil {
		t.log.Error("access table unreadable; refusing", "err", err)
		return 0
	}
	return s.perms(id, bucket)
}

// Allowed reports whether access key id holds every permission in p on
// bucket. p == 0 is never allowed.
func (t *Table) Allowed(id, bucket string, p Perm) bool {
	return p != 0 && t.permsNow(id, bucket)&p == p
}

// MayPut reports whether id may put an object into bucket at all: Write,
// or Inbox (then only where no object exists: see MayOverwrite).
func (t *Table) MayPut(id, bucket string) bool {
	return t.permsNow(id, bucket)&(Write|Inbox) != 0
}

// MayOverwrite reports whether id may replace an existing object in
// bucket (PutObject, CopyObject or CompleteMultipartUpload over a key that
// exists). An inbox key may not.
func (t *Table) MayOverwrite(id, bucket string) bool {
	return t.permsNow(id, bucket)&Write != 0
}

// IsAdmin reports whether id is an admin key: it may create and delete
// buckets.
func (t *Table) IsAdmin(id string) bool {
	e, err := t.lookup(id)
	return err == nil && e != nil && e.key.Admin
}

// Visible reports whether bucket shows in id's ListBuckets: the key holds
// a permission other than Inbox on it. An inbox key lists nothing.
func (t *Table) Visible(id, bucket string) bool {
	return t.permsNow(id, bucket)&everything != 0
}

// VisibleBuckets returns the names among buckets that id may see, in the
// order given.
func (t *Table) VisibleBuckets(id string, buckets []string) []string {
	s, err := t.check()
	if err != nil {
		t.log.Error("access table unreadable; refusing", "err", err)
		return nil
	}
	var out []string
	for _, b := range buckets {
		if s.perms(id, b)&everything != 0 {
			out = append(out, b)
		}
	}
	return out
}

// Policy action names (versitygw auth/bucket_policy_actions.go, and AWS's
// list of S3 actions).
const (
	actGetObject                  = "s3:GetObject"
	actGetObjectAttributes        = "s3:GetObjectAttributes"
	actPutObject                  = "s3:PutObject"
	actAbortMultipartUpload       = "s3:AbortMultipartUpload"
	actListMultipartUploadParts   = "s3:ListMultipartUploadParts"
	actListBucket                 = "s3:ListBucket"
	actListBucketMultipartUploads = "s3:ListBucketMultipartUploads"
	actListBucketVersions         = "s3:ListBucketVersions"
	actGetBucketLocation          = "s3:GetBucketLocation"
	actDeleteObject               = "s3:DeleteObject"
	actDeleteBucket               = "s3:DeleteBucket"
	// Answered NotImplemented by the gateway (no CORS, no ACLs), but
	// clients such as s3cmd's info ask and accept only that answer.
	actGetBucketCORS = "s3:GetBucketCORS"
	actGetObjectAcl  = "s3:GetObjectAcl"
	// Object tags: reading them is Read's; changing them is Write's. The
	// front end also asks for s3:PutObjectTagging when an upload or copy
	// carries x-amz-tagging, so Inbox holds it too, for the tags of its
	// own new objects; the gateway refuses PutObjectTagging itself to a
	// key that may not overwrite (an inbox key), whatever the object, so
	// that it neither changes nor learns of objects it did not make.
	actGetObjectTagging           = "s3:GetObjectTagging"
	actPutObjectTagging           = "s3:PutObjectTagging"
	actPutObjectVersionTagging    = "s3:PutObjectVersionTagging"
	actDeleteObjectTagging        = "s3:DeleteObjectTagging"
	actDeleteObjectVersionTagging = "s3:DeleteObjectVersionTagging"
	// The same requests naming a version: every object's one version is
	// "null", and the gateway refuses any other (InvalidArgument).
	actGetObjectVersion           = "s3:GetObjectVersion"
	actGetObjectVersionAttributes = "s3:GetObjectVersionAttributes"
	actGetObjectVersionTagging    = "s3:GetObjectVersionTagging"
	actDeleteObjectVersion        = "s3:DeleteObjectVersion"
)

// actions returns the policy actions that p (and admin) grant, sorted.
// HeadObject is authorized as s3:GetObject, HeadBucket as s3:ListBucket,
// the multipart create, upload-part and complete calls as s3:PutObject,
// DeleteObjects per object as s3:DeleteObject; an upload or copy with
// x-amz-tagging also needs s3:PutObjectTagging.
func actions(p Perm, admin bool) []string {
	var a []string
	if p&Read != 0 {
		a = append(a, actGetObject, actGetObjectAttributes, actGetObjectAcl, actGetObjectTagging,
			actGetObjectVersion, actGetObjectVersionAttributes, actGetObjectVersionTagging)
	}
	if p&(Write|Inbox) != 0 {
		a = append(a, actPutObject, actPutObjectTagging)
	}
	if p&Write != 0 {
		a = append(a, actAbortMultipartUpload, actListMultipartUploadParts,
			actPutObjectVersionTagging, actDeleteObjectTagging, actDeleteObjectVersionTagging)
	}
	if p&List != 0 {
		a = append(a, actListBucket, actListBucketVersions, actListBucketMultipartUploads, actGetBucketLocation, actGetBucketCORS)
	}
	if p&Delete != 0 {
		a = append(a, actDeleteObject, actDeleteObjectVersion)
	}
	if admin {
		// Creating buckets is the role's (RoleUserPlus), not a policy's.
		a = append(a, actDeleteBucket)
	}
	slices.Sort(a)
	return slices.Compact(a)
}

// The bucket policy document, as versitygw (auth/bucket_policy.go) and AWS
// read it.
type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string    `json:"Sid"`
	Effect    string    `json:"Effect"`
	Principal principal `json:"Principal"`
	Action    []string  `json:"Action"`
	Resource  []string  `json:"Resource"`
}

type principal struct {
	AWS []string `json:"AWS"`
}

// BucketPolicy returns the bucket policy that says, for bucket, what every
// access key may do there: one Allow statement per key holding anything on
// it (its grant there and on "*", or admin), naming the key by its id,
// with the actions its permissions map to, on the bucket and its objects.
// There is never a "*" principal, and a bucket no key holds anything on
// gets a policy with no statement, which allows nothing. The gateway's
// backend returns it from GetBucketPolicy for every bucket, so versitygw
// never falls back to ACLs.
func (t *Table) BucketPolicy(bucket string) ([]byte, error) {
	return t.bucketPolicy(bucket, nil)
}

// BucketPolicyFor is the part of BucketPolicy about key id alone: its
// statement, or none. A statement names one key as its principal and
// allows only, so a request by id is allowed under it exactly what it is
// allowed under the whole policy — and the front end's authorizer parses
// the policy it is given on every request, which with the whole policy
// grows with the number of keys. The gateway's backend gives the
// authorizer this one (clients cannot read policies).
func (t *Table) BucketPolicyFor(bucket, id string) ([]byte, error) {
	return t.bucketPolicy(bucket, &id)
}

// bucketPolicy is BucketPolicy for every key (only nil, cached) or for
// key *only (made each time: one statement).
func (t *Table) bucketPolicy(bucket string, only *string) ([]byte, error) {
	if err := repo.ValidateBucket(bucket); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s, err := t.check()
	if err != nil {
		return nil, err
	}
	var ids []string
	if only != nil {
		if _, ok := s.keys[*only]; ok {
			ids = []string{*only}
		}
	} else {
		if p, ok := s.policies.Load(bucket); ok {
			return p.([]byte), nil
		}
		ids = make([]string, 0, len(s.keys))
		for id := range s.keys {
			ids = append(ids, id)
		}
		slices.Sort(ids)
	}
	doc := policyDoc{Version: "2012-10-17", Statement: []statement{}}
	for _, id := range ids {
		e := s.keys[id]
		a := actions(s.perms(id, bucket), e.key.Admin)
		if len(a) == 0 {
			continue
		}
		doc.Statement = append(doc.Statement, statement{
			Sid:       "Key" + id, // AWS allows only A-Z, a-z, 0-9 in a Sid
			Effect:    "Allow",
			Principal: principal{AWS: []string{id}},
			Action:    a,
			Resource:  []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if only == nil {
		// The caller's string may alias a buffer the S3 front end reuses
		// for the next request: a cache key must be a copy, or it later
		// reads as another bucket's name and serves this policy for it.
		s.policies.Store(strings.Clone(bucket), b)
	}
	return b, nil
}
