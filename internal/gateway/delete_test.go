package gateway

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func deleteRequest(bucket string, quiet bool, keys ...string) *s3.DeleteObjectsInput {
	d := &types.Delete{Quiet: aws.Bool(quiet)}
	for _, k := range keys {
		d.Objects = append(d.Objects, types.ObjectIdentifier{Key: aws.String(k)})
	}
	return &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: d}
}

func deletedKeys(out *s3.DeleteObjectsOutput) []string {
	var ks []string
	for _, d := range out.Deleted {
		ks = append(ks, aws.ToString(d.Key))
	}
	return ks
}

// DeleteObjects in quiet mode answers only the keys it could not delete,
// as S3 does; the same request not quiet names every key deleted (a key
// that was not there included). Both delete, and a quiet request still
// answers its errors.
func TestDeleteObjectsQuiet(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c", "d", "kept"} {
		if _, err := put(t, c, "docs", k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.DeleteObjects(ctx, deleteRequest("docs", false, "a", "b", "missing"))
	if err != nil || !slices.Equal(deletedKeys(out), []string{"a", "b", "missing"}) || len(out.Errors) != 0 {
		t.Fatalf("delete, not quiet: %v, deleted %q, errors %+v", err, deletedKeys(out), out.Errors)
	}
	out, err = c.DeleteObjects(ctx, deleteRequest("docs", true, "c", "d", "missing"))
	if err != nil || len(out.Deleted) != 0 || len(out.Errors) != 0 {
		t.Fatalf("delete, quiet: %v, deleted %q, errors %+v", err, deletedKeys(out), out.Errors)
	}
	lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("docs")})
	if err != nil || !slices.Equal(keysOf(lo.Contents), []string{"kept"}) {
		t.Fatalf("after the deletes: %v, %q left", err, keysOf(lo.Contents))
	}

	// The reader key may not delete: its quiet request is answered with
	// the error, and deletes nothing.
	k := g.acc.keys[1]
	out, err = g.client(k.id, k.secret, nil).DeleteObjects(ctx, deleteRequest("docs", true, "kept"))
	if err != nil || len(out.Deleted) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].Key) != "kept" ||
		aws.ToString(out.Errors[0].Code) != "AccessDenied" {
		t.Fatalf("quiet delete refused: %v, deleted %q, errors %+v", err, deletedKeys(out), out.Errors)
	}
	if _, _, err := get(c, "docs", "kept", ""); err != nil {
		t.Errorf("the refused delete removed the key: %v", err)
	}
}

// postDelete sends body as a DeleteObjects request of the admin key,
// signed with SigV4, and returns the answer's status and body.
func (g *gw) postDelete(t *testing.T, bucket, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url+"/"+bucket+"?delete", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	md := md5.Sum([]byte(body))
	sum := sha256.Sum256([]byte(body))
	req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(md[:]))
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	k := g.acc.keys[0]
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: k.id, SecretAccessKey: k.secret},
		req, hex.EncodeToString(sum[:]), "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// A Quiet that is not a boolean is MalformedXML and deletes nothing; the
// same body with Quiet true deletes and answers no key.
func TestDeleteObjectsQuietMalformed(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "docs", "a", []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	body := func(quiet string) string {
		return `<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object><Quiet>` + quiet + `</Quiet></Delete>`
	}
	if st, b := g.postDelete(t, "docs", body("yes")); st != http.StatusBadRequest || !strings.Contains(b, "<Code>MalformedXML</Code>") {
		t.Fatalf("Quiet yes: %d %s", st, b)
	}
	if _, _, err := get(c, "docs", "a", ""); err != nil {
		t.Fatalf("the refused request deleted the key: %v", err)
	}
	if st, b := g.postDelete(t, "docs", body("true")); st != http.StatusOK || strings.Contains(b, "<Deleted>") || strings.Contains(b, "<Error>") {
		t.Fatalf("Quiet true: %d %s", st, b)
	}
	if _, _, err := get(c, "docs", "a", ""); errCode(err) != "NoSuchKey" {
		t.Errorf("after the quiet delete: %v", err)
	}
}
