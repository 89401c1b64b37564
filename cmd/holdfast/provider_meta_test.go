package main

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// s3setmeta BUCKET acts as the provider: it rewrites every object in
// BUCKET in place with forged user metadata, content type and cache
// headers (a CopyObject onto itself, metadata replaced), then prints how
// many it changed.
func cmdS3SetMeta(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: s3setmeta BUCKET")
	}
	srv := ts.Value("s3").(*versitygw.Server)
	c, err := srv.Client()
	ts.Check(err)
	ctx := context.Background()
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(args[0])})
	ts.Check(err)
	n := 0
	for _, o := range out.Contents {
		_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(args[0]), Key: o.Key,
			CopySource: aws.String(args[0] + "/" + aws.ToString(o.Key)), MetadataDirective: types.MetadataDirectiveReplace,
			Metadata: map[string]string{"camera": "FORGED-BY-PROVIDER"}, ContentType: aws.String("text/x-forged"),
			CacheControl: aws.String("forged")})
		ts.Check(err)
		n++
	}
	ts.Logf("s3setmeta: rewrote %d objects", n)
	if n == 0 {
		ts.Fatalf("s3setmeta: no objects in %s", args[0])
	}
}
