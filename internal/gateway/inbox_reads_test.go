package gateway

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestInboxRefusedNewReads: the inbox key of "drop" may not list its
// versions, read an object's attributes or tags, nor copy a part from an
// object in it; the admin may (control).
func TestInboxRefusedNewReads(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("drop")}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "drop", "secret-name", []byte("secret"), nil); err != nil {
		t.Fatal(err)
	}
	k := g.acc.keys[2]
	inbox := g.client(k.id, k.secret, nil)
	for _, cl := range []struct {
		name string
		c    *s3.Client
		want string
	}{{"admin", c, ""}, {"inbox", inbox, "AccessDenied"}} {
		_, err := cl.c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("drop")})
		if errCode(err) != cl.want {
			t.Errorf("%s: list versions: %v", cl.name, err)
		}
		_, err = cl.c.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{Bucket: aws.String("drop"), Key: aws.String("secret-name"),
			ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesObjectSize}})
		if errCode(err) != cl.want {
			t.Errorf("%s: attributes: %v", cl.name, err)
		}
		_, err = cl.c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("drop"), Key: aws.String("secret-name")})
		if errCode(err) != cl.want {
			t.Errorf("%s: tagging: %v", cl.name, err)
		}
		cu, err := cl.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("drop"), Key: aws.String("up-" + cl.name)})
		if err != nil {
			t.Fatalf("%s: create upload: %v", cl.name, err)
		}
		_, err = cl.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("drop"), Key: aws.String("up-" + cl.name),
			UploadId: cu.UploadId, PartNumber: aws.Int32(1), CopySource: aws.String("drop/secret-name")})
		if errCode(err) != cl.want {
			t.Errorf("%s: part copy: %v", cl.name, err)
		}
	}
}
