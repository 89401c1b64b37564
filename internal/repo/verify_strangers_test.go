package repo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestVerifyReportsStrangers: what the provider adds under names Holdfast
// never writes — an S3 "folder" key, a file or directory of another shape
// in a local store — is never served (List skips it) but verify reports
// it as unknown, naming it. Control: the same repository verifies clean
// before the injection.
func TestVerifyReportsStrangers(t *testing.T) {
	mpBackends(t, func(t *testing.T, e *mpEnv) {
		e.put("data", "a", random(3000))
		sum, fs, err := e.verifyWith(VerifyOptions{})
		if err != nil || sum.Damaged() || len(fs) != 0 {
			t.Fatalf("before the injection: %v, %+v, %v", sum.Counts, fs, err)
		}
		var want []string
		ctx := context.Background()
		switch e.kind {
		case "local":
			for _, p := range []string{"evil.txt", "ab/not-a-name!", "zz-folder/inside"} {
				full := filepath.Join(e.store, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte("planted"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want = []string{"ab/not-a-name!", "evil.txt", "zz-folder/"}
		case "s3":
			for _, k := range []string{"vault/evil/object", "vault/Upper.Case"} {
				if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(k),
					Body: bytes.NewReader([]byte("planted"))}); err != nil {
					t.Fatal(err)
				}
			}
			want = []string{"Upper.Case", "evil/object"}
		}
		sum, fs, err = e.verifyWith(VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range fs {
			if f.Status != StatusUnknown || !strings.Contains(f.Detail, "never writes") {
				t.Errorf("finding %+v", f)
			}
			got = append(got, f.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || !sum.Damaged() || sum.Counts[StatusUnknown] != len(want) {
			t.Errorf("verify reported %q (counts %v), want %q as unknown", got, sum.Counts, want)
		}
		// The stranger is never served: the object beside it still reads.
		if rd, err := e.r.OpenObject(ctx, "data", "a"); err != nil {
			t.Errorf("reading beside the strangers: %v", err)
		} else {
			rd.Close()
		}
	})
}
