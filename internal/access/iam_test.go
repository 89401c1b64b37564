package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/embedgw"
	"github.com/versity/versitygw/s3api"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"
)

// TestSigningKeyAWSVector checks the derivation against the signing key of
// AWS's Signature Version 4 test suite (secret
// wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830/us-east-1/iam) and
// the example in AWS's "Derive a signing key" documentation (20120215),
// through a record sealed and opened as any other.
func TestSigningKeyAWSVector(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	const id = "HFAWSEXAMPLE00000000"
	sec := []byte("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	if _, _, err := tb.add(context.Background(), id, sec, "aws example", false, []Grant{{"photos", Read}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct{ date, service, want string }{
		{"20150830", "iam", "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"},
		{"20120215", "iam", "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"},
	} {
		k, acc, err := tb.IAM().DeriveSigningKey(id, "", v.date, "us-east-1", v.service)
		if err != nil || hex.EncodeToString(k) != v.want || acc.Secret != "" {
			t.Errorf("%s: %x, %v, %+v", v.date, k, err, acc)
		}
	}
}

// secretIAM is an IAM service that hands versitygw the secret itself, so
// that versitygw derives the signing key on its own (what it does for its
// other IAM backends).
type secretIAM struct {
	auth.IAMService
	acc auth.Account
}

func (s secretIAM) GetUserAccount(id string) (auth.Account, error) {
	if id != s.acc.Access {
		return auth.Account{}, auth.ErrNoSuchUser
	}
	return s.acc, nil
}

// TestDeriveMatchesVersitygw: the signing key versitygw gets from the
// adapter equals the one versitygw derives itself from the secret; an
// unknown id, a revoked one and a session token are refused.
func TestDeriveMatchesVersitygw(t *testing.T) {
	e := newEnv(t)
	tb := e.open(t, e.cat, Options{})
	c, _ := mustAdd(t, tb, Spec{Name: "k", Grants: []Grant{{"photos", Read}}})
	root := auth.Account{Access: "HFROOT00000000000000", Secret: "root-secret-unknown-to-anyone", Role: auth.RoleAdmin}
	ours := tb.IAM()
	theirs := secretIAM{acc: auth.Account{Access: c.ID, Secret: c.Secret(), Role: auth.RoleUser}}
	for _, scope := range [][3]string{{"20260301", "us-east-1", "s3"}, {"20261231", "eu-west-3", "s3"}, {"20260301", "us-east-1", "iam"}} {
		got, acc, err := auth.ResolveDerivedKey(ours, root, c.ID, "", scope[0], scope[1], scope[2])
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := auth.ResolveDerivedKey(theirs, root, c.ID, "", scope[0], scope[1], scope[2])
		if err != nil || len(want) != 32 || !slices.Equal(got, want) {
			t.Fatalf("%v: adapter %x, versitygw from the secret %x (%v)", scope, got, want, err)
		}
		if acc.Access != c.ID || acc.Secret != "" || acc.Role != auth.RoleUser {
			t.Fatalf("account %v", acc)
		}
	}
	// versitygw compares these errors with ==: they must be the very values.
	if _, _, err := ours.DeriveSigningKey(unknownID, "", "20260301", "us-east-1", "s3"); err != auth.ErrNoSuchUser {
		t.Fatalf("unknown id: %v", err)
	}
	if _, _, err := ours.DeriveSigningKey(c.ID, "some-token", "20260301", "us-east-1", "s3"); err != auth.ErrInvalidSessionToken {
		t.Fatalf("session token: %v", err)
	}
	if err := tb.Revoke(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ours.DeriveSigningKey(c.ID, "", "20260301", "us-east-1", "s3"); err != auth.ErrNoSuchUser {
		t.Fatalf("revoked id: %v", err)
	}
}

// gatewayBackend is as much of a gateway backend as the test requests
// need: buckets listed as the table lets the caller see them, HeadBucket,
// an ACL with no grants, and the table's bucket policies.
type gatewayBackend struct {
	backend.BackendUnsupported
	t       *Table
	buckets []string
}

func (b gatewayBackend) ListBuckets(_ context.Context, in s3response.ListBucketsInput) (s3response.ListAllMyBucketsResult, error) {
	res := s3response.ListAllMyBucketsResult{Owner: s3response.CanonicalUser{ID: in.Owner}}
	for _, name := range b.t.VisibleBuckets(in.Owner, b.buckets) {
		res.Buckets.Bucket = append(res.Buckets.Bucket, s3response.ListAllMyBucketsEntry{Name: name, CreationDate: time.Unix(0, 0)})
	}
	return res, nil
}

func (b gatewayBackend) HeadBucket(_ context.Context, in *s3.HeadBucketInput) (*s3.HeadBucketOutput, error) {
	if !slices.Contains(b.buckets, aws.ToString(in.Bucket)) {
		return nil, s3err.GetAPIError(s3err.ErrNoSuchBucket)
	}
	return &s3.HeadBucketOutput{}, nil
}

func (gatewayBackend) GetBucketAcl(context.Context, *s3.GetBucketAclInput) ([]byte, error) {
	return nil, nil
}

func (b gatewayBackend) GetBucketPolicy(_ context.Context, bucket string) ([]byte, error) {
	return b.t.BucketPolicy(bucket)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestThroughVersitygw runs versitygw's S3 front end (embedgw) with the
// table as its IAM service, and signs requests with the AWS SDK: the
// right secret is accepted (headers and presigned URLs) by versitygw's own
// SigV4 verification through DeriveSigningKey; a wrong secret, an unknown
// id, a tampered presigned URL, an anonymous request and a revoked key
// are refused; the listing and HeadBucket follow the permissions; an admin
// key does not reach versitygw's admin API, which the gateway's root does.
func TestThroughVersitygw(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const stale = 200 * time.Millisecond
	clk := useManualClock(t)
	tb := e.open(t, e.openCatalog(t), Options{MaxStale: stale})
	cli := e.open(t, e.openCatalog(t), Options{}) // `holdfast access`, elsewhere
	reader, _ := mustAdd(t, cli, Spec{Name: "reader", Grants: []Grant{{"photos", Read | List}}})
	inbox, _ := mustAdd(t, cli, Spec{Name: "inbox", Grants: []Grant{{"drop", Inbox}}})
	admin, _ := mustAdd(t, cli, Spec{Name: "admin", Admin: true})
	if err := tb.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	addr := freePort(t)
	rootAccess, rootSecret := "HFROOT"+randomHex(7), randomHex(20)
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- embedgw.RunVersityGW(gctx, gatewayBackend{t: tb, buckets: []string{"drop", "photos", "videos"}}, &embedgw.Config{
			RootUserAccess: rootAccess, RootUserSecret: rootSecret, Ports: []string{addr},
			MaxConnections: 64, MaxRequests: 64, MultipartMaxParts: 10000, Quiet: true, IAMService: tb.IAM(),
			S3Options: []s3api.Option{s3api.WithOnListen(func() { close(ready) })},
		})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the gateway did not stop")
		}
	})
	endpoint := "http://" + addr
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the gateway stopped before it was ready: %v", err)
	}

	client := func(id, secret string) *s3.Client {
		return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
	}
	list := func(c *s3.Client) ([]string, error) {
		out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range out.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
		return names, nil
	}
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return fmt.Sprint(err)
	}
	status := func(err error) int {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			return re.HTTPStatusCode()
		}
		return 0
	}

	// Signed with the right secret: accepted; the listing is the key's.
	for _, k := range []struct {
		c    *Credentials
		want []string
	}{{reader, []string{"photos"}}, {inbox, nil}, {admin, []string{"drop", "photos", "videos"}}} {
		got, err := list(client(k.c.ID, k.c.Secret()))
		if err != nil || !slices.Equal(got, k.want) {
			t.Errorf("%s lists %v, %v; want %v", k.c.ID, got, err, k.want)
		}
	}
	// A wrong secret, an unknown id: refused with S3's codes.
	if _, err := list(client(reader.ID, admin.Secret())); code(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := list(client(unknownID, reader.Secret())); code(err) != "InvalidAccessKeyId" {
		t.Errorf("unknown id: %v", err)
	}

	// HeadBucket is ListBucket: the reader may, the inbox key may not.
	if _, err := client(reader.ID, reader.Secret()).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("photos")}); err != nil {
		t.Errorf("reader HeadBucket: %v", err)
	}
	if _, err := client(inbox.ID, inbox.Secret()).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("drop")}); status(err) != http.StatusForbidden {
		t.Errorf("inbox HeadBucket: %v", err)
	}
	if _, err := client(reader.ID, reader.Secret()).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("videos")}); status(err) != http.StatusForbidden {
		t.Errorf("reader HeadBucket of another bucket: %v", err)
	}

	// Presigned URLs go through the same adapter.
	presign := func(id, secret string) string {
		p, err := s3.NewPresignClient(client(id, secret)).PresignHeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("photos")})
		if err != nil {
			t.Fatal(err)
		}
		return p.URL
	}
	head := func(url string) int {
		resp, err := http.Head(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := presign(reader.ID, reader.Secret())
	if s := head(good); s != http.StatusOK {
		t.Errorf("presigned HeadBucket: %d", s)
	}
	tampered := []byte(good)
	tampered[len(tampered)-1] ^= 1 // the signature is the last parameter
	if s := head(string(tampered)); s != http.StatusForbidden {
		t.Errorf("tampered presigned URL: %d", s)
	}
	if s := head(presign(reader.ID, inbox.Secret())); s != http.StatusForbidden {
		t.Errorf("URL presigned with a wrong secret: %d", s)
	}
	if s := head(endpoint + "/photos"); s != http.StatusForbidden {
		t.Errorf("anonymous HeadBucket: %d", s)
	}

	// versitygw's admin API (on the S3 port): an admin access key is not
	// versitygw's admin; the gateway's own root is (the control).
	adminAPI := func(id, secret string) int {
		req, _ := http.NewRequest(http.MethodPatch, endpoint+"/list-users", nil)
		sum := sha256.Sum256(nil)
		ph := hex.EncodeToString(sum[:])
		req.Header.Set("X-Amz-Content-Sha256", ph)
		err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, req, ph, "s3", "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := adminAPI(admin.ID, admin.Secret()); s != http.StatusForbidden {
		t.Errorf("an admin access key reached versitygw's admin API: %d", s)
	}
	if s := adminAPI(rootAccess, rootSecret); s != http.StatusOK {
		t.Errorf("control: the root does not reach the admin API: %d", s)
	}

	// Revoked elsewhere: the gateway refuses the key within MaxStale; the
	// other keys go on working.
	if err := cli.Revoke(ctx, reader.ID); err != nil {
		t.Fatal(err)
	}
	clk.advance(stale)
	if _, err := list(client(reader.ID, reader.Secret())); code(err) != "InvalidAccessKeyId" {
		t.Errorf("revoked key: %v", err)
	}
	if s := head(good); s != http.StatusForbidden {
		t.Errorf("URL presigned by a revoked key: %d", s)
	}
	if got, err := list(client(admin.ID, admin.Secret())); err != nil || len(got) != 3 {
		t.Errorf("control after the revocation: %v, %v", got, err)
	}
}
