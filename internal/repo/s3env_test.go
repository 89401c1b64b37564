package repo

import (
	"context"
	"os"
	"testing"

	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// startS3 starts a versitygw server over plain HTTP (TLS is the store's
// own tests' business) with an empty bucket, points the AWS credential
// chain at it and nothing else, and returns it; it stops with the test.
func startS3(t *testing.T, bucket string) *versitygw.Server {
	t.Helper()
	srv, err := versitygw.Start(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": versitygw.AccessKey, "AWS_SECRET_ACCESS_KEY": versitygw.SecretKey,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_PROFILE": ""} {
		t.Setenv(k, v)
	}
	if err := srv.MakeBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	return srv
}
