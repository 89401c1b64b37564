package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// Script commands for the catalog backup scripts (testdata/script/backup*.txtar,
// testdata/s3/backup.txtar).

// killAt adds to hooks a SIGKILL at the named point of a write (the points
// of repo.Hooks.At): a crash there.
func killAt(hooks *repo.Hooks, point string) *repo.Hooks {
	if hooks == nil {
		hooks = &repo.Hooks{}
	}
	hooks.At = func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	return hooks
}

// jsonget FILE FIELD VAR sets $VAR to the top-level FIELD of the JSON
// object in FILE (stdout: the last command's output).
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonget FILE FIELD VAR")
	}
	var m map[string]any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &m))
	v, ok := m[args[1]]
	if !ok {
		ts.Fatalf("jsonget: no field %q", args[1])
	}
	ts.Setenv(args[2], fmt.Sprint(v))
}

// storeobj acts as the provider on object NAME of the local store in DIR:
//
//	storeobj rm DIR NAME           delete it
//	storeobj flip DIR NAME OFFSET  flip one bit
//	storeobj copy DIR NAME OTHER   replace its bytes with those of OTHER
func cmdStoreObj(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: storeobj rm|flip|copy DIR NAME [ARG]")
	}
	path := func(name string) string { return filepath.Join(ts.MkAbs(args[1]), name[:2], name) }
	p := path(args[2])
	switch {
	case args[0] == "rm" && len(args) == 3:
		ts.Check(os.Remove(p))
	case args[0] == "flip" && len(args) == 4:
		off, err := strconv.Atoi(args[3])
		ts.Check(err)
		b, err := os.ReadFile(p)
		ts.Check(err)
		b[off] ^= 1
		ts.Check(os.WriteFile(p, b, 0o600))
	case args[0] == "copy" && len(args) == 4:
		b, err := os.ReadFile(path(args[3]))
		ts.Check(err)
		ts.Check(os.WriteFile(p, b, 0o600))
	default:
		ts.Fatalf("usage: storeobj rm|flip|copy DIR NAME [ARG]")
	}
}

// s3obj acts as the provider on KEY in BUCKET of the S3 server:
//
//	s3obj rm BUCKET KEY          delete it
//	s3obj save BUCKET KEY FILE   copy its bytes to FILE
//	s3obj put BUCKET KEY FILE    store FILE's bytes under KEY
func cmdS3Obj(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: s3obj rm|save|put BUCKET KEY [FILE]")
	}
	c, err := ts.Value("s3").(*versitygw.Server).Client()
	ts.Check(err)
	ctx := context.Background()
	b, k := aws.String(args[1]), aws.String(args[2])
	switch {
	case args[0] == "rm" && len(args) == 3:
		_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k})
		ts.Check(err)
	case args[0] == "save" && len(args) == 4:
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: k})
		ts.Check(err)
		defer out.Body.Close()
		f, err := os.Create(ts.MkAbs(args[3]))
		ts.Check(err)
		defer f.Close()
		_, err = f.ReadFrom(out.Body)
		ts.Check(err)
	case args[0] == "put" && len(args) == 4:
		f, err := os.Open(ts.MkAbs(args[3]))
		ts.Check(err)
		defer f.Close()
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: f})
		ts.Check(err)
	default:
		ts.Fatalf("usage: s3obj rm|save|put BUCKET KEY [FILE]")
	}
}
