package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
)

// policyBackend is the part of a gateway backend versitygw's authorizer
// reads: the bucket policy, which is the table's.
type policyBackend struct {
	backend.BackendUnsupported
	t    *Table
	only *string // if set: the policy for this key alone (BucketPolicyFor)
}

func (b policyBackend) GetBucketPolicy(_ context.Context, bucket string) ([]byte, error) {
	if b.only != nil {
		return b.t.BucketPolicyFor(bucket, *b.only)
	}
	return b.t.BucketPolicy(bucket)
}

// s3Actions are the actions versitygw's controllers authorize
// (auth/bucket_policy_actions.go), bucket and object ones.
var s3Actions = []auth.Action{
	auth.GetBucketAclAction, auth.CreateBucketAction, auth.PutBucketAclAction, auth.DeleteBucketAction,
	auth.PutBucketVersioningAction, auth.GetBucketVersioningAction, auth.PutBucketPolicyAction,
	auth.GetBucketPolicyAction, auth.DeleteBucketPolicyAction, auth.AbortMultipartUploadAction,
	auth.ListMultipartUploadPartsAction, auth.ListBucketMultipartUploadsAction, auth.PutObjectAction,
	auth.GetObjectAction, auth.GetObjectVersionAction, auth.DeleteObjectAction, auth.DeleteObjectVersionAction,
	auth.GetObjectAclAction, auth.GetObjectAttributesAction, auth.GetObjectVersionAttributesAction,
	auth.PutObjectAclAction, auth.RestoreObjectAction, auth.GetBucketTaggingAction, auth.PutBucketTaggingAction,
	auth.GetObjectTaggingAction, auth.GetObjectVersionTaggingAction, auth.PutObjectTaggingAction,
	auth.PutObjectVersionTaggingAction, auth.DeleteObjectTaggingAction, auth.DeleteObjectVersionTaggingAction,
	auth.ListBucketVersionsAction, auth.ListBucketAction, auth.GetBucketObjectLockConfigurationAction,
	auth.PutBucketObjectLockConfigurationAction, auth.GetObjectLegalHoldAction, auth.PutObjectLegalHoldAction,
	auth.GetObjectRetentionAction, auth.PutObjectRetentionAction, auth.BypassGovernanceRetentionAction,
	auth.PutBucketOwnershipControlsAction, auth.GetBucketOwnershipControlsAction, auth.PutBucketCorsAction,
	auth.GetBucketCorsAction, auth.PutAnalyticsConfigurationAction, auth.GetAnalyticsConfigurationAction,
	auth.PutEncryptionConfigurationAction, auth.GetEncryptionConfigurationAction,
	auth.PutIntelligentTieringConfigurationAction, auth.GetIntelligentTieringConfigurationAction,
	auth.PutInventoryConfigurationAction, auth.GetInventoryConfigurationAction,
	auth.PutLifecycleConfigurationAction, auth.GetLifecycleConfigurationAction, auth.PutBucketLoggingAction,
	auth.GetBucketLoggingAction, auth.PutBucketRequestPaymentAction, auth.GetBucketRequestPaymentAction,
	auth.PutMetricsConfigurationAction, auth.GetMetricsConfigurationAction,
	auth.PutReplicationConfigurationAction, auth.GetReplicationConfigurationAction,
	auth.PutBucketPublicAccessBlockAction, auth.GetBucketPublicAccessBlockAction,
	auth.PutBucketNotificationAction, auth.GetBucketNotificationAction, auth.PutAccelerateConfigurationAction,
	auth.GetAccelerateConfigurationAction, auth.PutBucketWebsiteAction, auth.GetBucketWebsiteAction,
	auth.DeleteBucketWebsiteAction, auth.GetBucketPolicyStatusAction, auth.GetBucketLocationAction,
	auth.ListAllMyBucketsAction,
}

func isObjectAction(a auth.Action) bool {
	o := a.IsObjectAction()
	return o != nil && *o
}

// TestPolicyWithVersitygw evaluates every S3 action for keys of every kind
// with versitygw's own authorizer (auth.VerifyAccess) against the policy
// the table generates, and requires exactly the intended actions.
func TestPolicyWithVersitygw(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	iam := tb.IAM()
	be := policyBackend{t: tb}
	app := fiber.New()
	fctx := app.AcquireCtx(&fasthttp.RequestCtx{})
	defer app.ReleaseCtx(fctx)

	read := []auth.Action{auth.GetObjectAction, auth.GetObjectAttributesAction, auth.GetObjectAclAction, auth.GetObjectTaggingAction,
		auth.GetObjectVersionAction, auth.GetObjectVersionAttributesAction, auth.GetObjectVersionTaggingAction}
	write := []auth.Action{auth.PutObjectAction, auth.AbortMultipartUploadAction, auth.ListMultipartUploadPartsAction,
		auth.PutObjectTaggingAction, auth.PutObjectVersionTaggingAction, auth.DeleteObjectTaggingAction, auth.DeleteObjectVersionTaggingAction}
	list := []auth.Action{auth.ListBucketAction, auth.ListBucketVersionsAction, auth.ListBucketMultipartUploadsAction, auth.GetBucketLocationAction, auth.GetBucketCorsAction}
	del := []auth.Action{auth.DeleteObjectAction, auth.DeleteObjectVersionAction}
	cat := func(ls ...[]auth.Action) []auth.Action { return slices.Concat(ls...) }

	cases := []struct {
		name string
		spec Spec
		want []auth.Action // on bucket "photos"
	}{
		{"read", Spec{Grants: []Grant{{"photos", Read}}}, read},
		{"write", Spec{Grants: []Grant{{"photos", Write}}}, write},
		{"list", Spec{Grants: []Grant{{"photos", List}}}, list},
		{"delete", Spec{Grants: []Grant{{"photos", Delete}}}, del},
		{"inbox", Spec{Grants: []Grant{{"photos", Inbox}}}, []auth.Action{auth.PutObjectAction, auth.PutObjectTaggingAction}},
		{"rwld", Spec{Grants: []Grant{{"photos", Read | Write | List | Delete}}}, cat(read, write, list, del)},
		{"all buckets read", Spec{Grants: []Grant{{"*", Read}}}, read},
		{"all buckets read, list here", Spec{Grants: []Grant{{"*", Read}, {"photos", List}}}, cat(read, list)},
		{"another bucket only", Spec{Grants: []Grant{{"videos", Read | Write | List | Delete}}}, nil},
		{"inbox elsewhere", Spec{Grants: []Grant{{"videos", Inbox}}}, nil},
		{"admin", Spec{Admin: true}, cat(read, write, list, del, []auth.Action{auth.DeleteBucketAction})},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		c.spec.Name = c.name
		cr, _ := mustAdd(t, tb, c.spec)
		ids[i] = cr.ID
	}

	// Every decision is taken twice: under the whole policy and under the
	// requester's own statement alone (what the gateway gives the
	// authorizer); they must agree.
	var requester string
	own := policyBackend{t: tb, only: &requester}
	allowed := func(acc auth.Account, a auth.Action, bucket string) bool {
		obj := ""
		if isObjectAction(a) {
			obj = "some/key.jpg"
		}
		opts := auth.AccessOptions{Acc: acc, Bucket: bucket, Object: obj, Actions: []auth.Action{a}, Iam: iam}
		whole := auth.VerifyAccess(fctx, be, opts) == nil
		requester = acc.Access
		if alone := auth.VerifyAccess(fctx, own, opts) == nil; alone != whole {
			t.Errorf("key %s, %s on %s: allowed %v under the whole policy, %v under its own statement", acc.Access, a, bucket, whole, alone)
		}
		return whole
	}
	for i, c := range cases {
		acc, err := iam.GetUserAccount(ids[i])
		if err != nil {
			t.Fatal(err)
		}
		var got []auth.Action
		for _, a := range s3Actions {
			if allowed(acc, a, "photos") {
				got = append(got, a)
			}
		}
		slices.Sort(got)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: versitygw allows %v, want %v", c.name, got, want)
		}
		// Creating a bucket is the admin's alone (by role: there is no
		// policy for a bucket that does not exist yet).
		mayCreate := auth.VerifyCreateBucketAccess(fctx, iam, false, acc, "newbucket") == nil
		if mayCreate != c.spec.Admin {
			t.Errorf("%s: may create a bucket: %v", c.name, mayCreate)
		}
	}

	// Control for the negative cases: the same evaluation allows the
	// "another bucket only" key everything it holds on its own bucket.
	acc, _ := iam.GetUserAccount(ids[8])
	for _, a := range cat(read, write, list, del) {
		if !allowed(acc, a, "videos") {
			t.Errorf("another bucket only: %s refused on its own bucket", a)
		}
	}
	// An account the table does not know (the same shape as one it does)
	// gets nothing, and neither does an anonymous request.
	for _, a := range s3Actions {
		if allowed(auth.Account{Access: unknownID, Role: auth.RoleUser}, a, "photos") {
			t.Errorf("an unknown key is allowed %s", a)
		}
	}
	for _, bucket := range []string{"photos", "videos", "empty-bucket"} {
		pol, err := tb.BucketPolicy(bucket)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range s3Actions {
			obj := ""
			if isObjectAction(a) {
				obj = "k"
			}
			if auth.VerifyPublicBucketPolicy(pol, bucket, obj, nil, func(_, o string) string { return o }, a) == nil {
				t.Errorf("%s: the policy grants anonymous %s", bucket, a)
			}
		}
	}
}

// TestPolicyDocument checks the generated JSON: versitygw accepts it as a
// bucket policy (PutBucketPolicy's validation, which resolves every
// principal through the IAM adapter); one Allow statement per key naming
// that key alone, on the bucket and its objects; never a "*" principal.
func TestPolicyDocument(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	r, _ := mustAdd(t, tb, Spec{Name: "r", Grants: []Grant{{"photos", Read}}})
	in, _ := mustAdd(t, tb, Spec{Name: "in", Grants: []Grant{{"photos", Inbox}}})
	all, _ := mustAdd(t, tb, Spec{Name: "all", Grants: []Grant{{"*", List}}})
	mustAdd(t, tb, Spec{Name: "elsewhere", Grants: []Grant{{"videos", Read}}})

	b, err := tb.BucketPolicy("photos")
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.ValidatePolicyDocument(b, "photos", tb.IAM()); err != nil {
		t.Fatalf("versitygw refuses the policy: %v\n%s", err, b)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid       string
			Effect    string
			Principal map[string][]string
			Action    []string
			Resource  []string
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) != 3 {
		t.Fatalf("policy %s", b)
	}
	wantActions := map[string][]string{
		r.ID: {"s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectAttributes", "s3:GetObjectTagging",
			"s3:GetObjectVersion", "s3:GetObjectVersionAttributes", "s3:GetObjectVersionTagging"},
		in.ID:  {"s3:PutObject", "s3:PutObjectTagging"},
		all.ID: {"s3:GetBucketCORS", "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions"},
	}
	for _, s := range doc.Statement {
		if s.Effect != "Allow" || len(s.Principal) != 1 || len(s.Principal["AWS"]) != 1 {
			t.Fatalf("statement %+v", s)
		}
		id := s.Principal["AWS"][0]
		if !slices.Equal(s.Action, wantActions[id]) {
			t.Errorf("%s: actions %v, want %v", id, s.Action, wantActions[id])
		}
		if !slices.Equal(s.Resource, []string{"arn:aws:s3:::photos", "arn:aws:s3:::photos/*"}) {
			t.Errorf("%s: resources %v", id, s.Resource)
		}
		for _, ch := range s.Sid {
			if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9') {
				t.Errorf("Sid %q is not alphanumeric", s.Sid)
			}
		}
	}
	if strings.Contains(string(b), `"*"`) {
		t.Fatalf("the policy holds a bare \"*\": %s", b)
	}

	// A bucket no key holds anything on: a policy with no statement, which
	// allows nothing (and which PutBucketPolicy would refuse as empty:
	// nobody can put it, the gateway only serves it).
	// The "*" key is in every bucket's policy, and alone in one nobody
	// else holds anything on.
	b, _ = tb.BucketPolicy("elsewhere")
	if !strings.Contains(string(b), all.ID) || strings.Contains(string(b), r.ID) {
		t.Fatalf("policy of a bucket only the \"*\" key holds: %s", b)
	}
	empty := newEnv(t)
	b, err = empty.open(t, empty.cat, Options{}).BucketPolicy("nobodys")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"Version":"2012-10-17","Statement":[]}` {
		t.Fatalf("empty policy %s", b)
	}
	if _, err := tb.BucketPolicy("Not_A_Bucket"); !errors.Is(err, ErrInvalid) {
		t.Fatal("a policy for a malformed bucket name")
	}

	// One key's part: its own statement, as in the whole policy, and
	// nothing for a key with nothing on the bucket or a key the table
	// does not know.
	whole, _ := tb.BucketPolicy("photos")
	for _, id := range []string{r.ID, in.ID, all.ID} {
		b, err := tb.BucketPolicyFor("photos", id)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.ValidatePolicyDocument(b, "photos", tb.IAM()); err != nil {
			t.Fatalf("versitygw refuses %s's policy: %v\n%s", id, err, b)
		}
		var one struct{ Statement []json.RawMessage }
		if err := json.Unmarshal(b, &one); err != nil || len(one.Statement) != 1 ||
			!strings.Contains(string(one.Statement[0]), `"AWS":["`+id+`"]`) || !bytes.Contains(whole, one.Statement[0]) {
			t.Fatalf("%s's policy %s (%v), not its statement of the whole policy %s", id, b, err, whole)
		}
	}
	elsewhere, _ := mustAdd(t, tb, Spec{Name: "elsewhere2", Grants: []Grant{{"videos", Read}}})
	for _, id := range []string{elsewhere.ID, unknownID} {
		if b, err := tb.BucketPolicyFor("photos", id); err != nil || string(b) != `{"Version":"2012-10-17","Statement":[]}` {
			t.Fatalf("policy of %s, which holds nothing on photos: %s %v", id, b, err)
		}
	}
	if _, err := tb.BucketPolicyFor("Not_A_Bucket", r.ID); !errors.Is(err, ErrInvalid) {
		t.Fatal("a key's policy for a malformed bucket name")
	}
}

func TestPermissionChecks(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	r, _ := mustAdd(t, tb, Spec{Name: "r", Grants: []Grant{{"photos", Read | List}}})
	w, _ := mustAdd(t, tb, Spec{Name: "w", Grants: []Grant{{"photos", Write}}})
	in, _ := mustAdd(t, tb, Spec{Name: "in", Grants: []Grant{{"drop", Inbox}}, Admin: false})
	star, _ := mustAdd(t, tb, Spec{Name: "star", Grants: []Grant{{"*", Read}, {"photos", Delete}}})
	adm, _ := mustAdd(t, tb, Spec{Name: "adm", Admin: true})

	type check struct {
		name string
		got  bool
		want bool
	}
	for _, c := range []check{
		{"r reads photos", tb.Allowed(r.ID, "photos", Read), true},
		{"r reads+lists photos", tb.Allowed(r.ID, "photos", Read|List), true},
		{"r writes photos", tb.Allowed(r.ID, "photos", Write), false},
		{"r reads+writes photos", tb.Allowed(r.ID, "photos", Read|Write), false},
		{"r reads videos", tb.Allowed(r.ID, "videos", Read), false},
		{"r nothing", tb.Allowed(r.ID, "photos", 0), false},
		{"w puts", tb.MayPut(w.ID, "photos"), true},
		{"w overwrites", tb.MayOverwrite(w.ID, "photos"), true},
		{"w reads", tb.Allowed(w.ID, "photos", Read), false},
		{"inbox puts", tb.MayPut(in.ID, "drop"), true},
		{"inbox overwrites", tb.MayOverwrite(in.ID, "drop"), false},
		{"inbox reads", tb.Allowed(in.ID, "drop", Read), false},
		{"inbox lists", tb.Allowed(in.ID, "drop", List), false},
		{"inbox write perm", tb.Allowed(in.ID, "drop", Write), false},
		{"inbox holds inbox", tb.Allowed(in.ID, "drop", Inbox), true},
		{"inbox puts elsewhere", tb.MayPut(in.ID, "photos"), false},
		{"inbox sees drop", tb.Visible(in.ID, "drop"), false},
		{"star reads any", tb.Allowed(star.ID, "anything", Read), true},
		{"star deletes photos", tb.Allowed(star.ID, "photos", Read|Delete), true},
		{"star deletes videos", tb.Allowed(star.ID, "videos", Delete), false},
		{"admin everything", tb.Allowed(adm.ID, "anything", Read|Write|List|Delete), true},
		{"admin overwrites", tb.MayOverwrite(adm.ID, "anything"), true},
		{"admin is admin", tb.IsAdmin(adm.ID), true},
		{"w is admin", tb.IsAdmin(w.ID), false},
		{"unknown reads", tb.Allowed(unknownID, "photos", Read), false},
		{"unknown puts", tb.MayPut(unknownID, "photos"), false},
		{"unknown is admin", tb.IsAdmin(unknownID), false},
		{"empty id", tb.MayPut("", "photos"), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v", c.name, c.got)
		}
	}
	buckets := []string{"drop", "music", "photos", "videos"}
	for id, want := range map[string][]string{
		r.ID:      {"photos"},
		w.ID:      {"photos"},
		in.ID:     nil,
		star.ID:   buckets,
		adm.ID:    buckets,
		unknownID: nil,
	} {
		if got := tb.VisibleBuckets(id, buckets); !slices.Equal(got, want) {
			t.Errorf("%s sees %v, want %v", id, got, want)
		}
	}
}

// TestBucketPolicyCacheKeyIsACopy: the S3 front end passes bucket names
// that alias a request buffer it reuses. The policy cache must key on a
// copy: a key held by reference changes when the buffer takes the next
// request's bucket name of the same length, and a later lookup that lands
// on that entry (its hash shares the entry's trie position, 1 in 16 at a
// shallow level) is served the first bucket's policy. Each answer through
// the reused buffer is compared with the answer for a separate string
// (the control) on a second table.
func TestBucketPolicyCacheKeyIsACopy(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	mustAdd(t, tb, Spec{Name: "r", Grants: []Grant{{"*", Read}}})
	control := e.open(t, e.cat, Options{})

	buf := []byte("b00000")
	name := unsafe.String(&buf[0], len(buf)) // as the front end hands it over
	wrong := 0
	for i := range 300 {
		copy(buf, fmt.Sprintf("b%05d", i)) // the buffer's next request
		got, err := tb.BucketPolicy(name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := control.BucketPolicy(strings.Clone(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of 300 buckets looked up through a reused buffer got another bucket's policy", wrong)
	}
}
