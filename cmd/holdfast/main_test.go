package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/keyring"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"holdfast": func() {
			// Scripts get cheap Argon2 parameters; this hook exists only in
			// test binaries.
			keyring.SetInsecureTestParamsForTesting()
			os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOLDFAST_HOME", filepath.Join(e.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"code":     cmdCode,
			"provider": cmdProvider,
			"mkrandom": cmdMkrandom,
		},
	})
}

// code N CMD ARGS... runs CMD and requires exit code N.
func cmdCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: code N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("bad exit code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// mkrandom FILE SIZE writes SIZE random bytes.
func cmdMkrandom(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mkrandom file size")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	b := make([]byte, n)
	rand.Read(b)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

// provider edits the local store as a malicious provider would:
//
//	provider flip BUCKET/KEY OFFSET   flip one bit
//	provider cut BUCKET/KEY LEN       truncate
//	provider rm BUCKET/KEY            delete
//	provider save BUCKET/KEY FILE     copy the stored bytes out
//	provider restore BUCKET/KEY FILE  put saved bytes back in its place
//	provider swap BUCKET/KEY BUCKET/KEY2
//	provider inject BUCKET/KEY NAME   copy its stored bytes to a new name
func cmdProvider(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: provider ACTION BUCKET/KEY [ARG]")
	}
	p := storedPath(ts, args[1])
	arg := ""
	if len(args) > 2 {
		arg = args[2]
	}
	b, err := os.ReadFile(p)
	ts.Check(err)
	switch args[0] {
	case "flip", "cut":
		n, err := strconv.Atoi(arg)
		ts.Check(err)
		if args[0] == "flip" {
			b[n] ^= 1
		} else {
			b = b[:n]
		}
		ts.Check(os.WriteFile(p, b, 0o600))
	case "rm":
		ts.Check(os.Remove(p))
	case "save":
		ts.Check(os.WriteFile(ts.MkAbs(arg), b, 0o600))
	case "restore":
		saved, err := os.ReadFile(ts.MkAbs(arg))
		ts.Check(err)
		ts.Check(os.WriteFile(p, saved, 0o600))
	case "swap":
		q := storedPath(ts, arg)
		other, err := os.ReadFile(q)
		ts.Check(err)
		ts.Check(os.WriteFile(p, other, 0o600))
		ts.Check(os.WriteFile(q, b, 0o600))
	case "inject":
		q := filepath.Join(ts.Getenv("HOLDFAST_HOME"), "store", arg[:2], arg)
		ts.Check(os.MkdirAll(filepath.Dir(q), 0o700))
		ts.Check(os.WriteFile(q, b, 0o600))
	default:
		ts.Fatalf("unknown provider action %q", args[0])
	}
}

// storedPath is the local store file behind BUCKET/KEY.
func storedPath(ts *testscript.TestScript, obj string) string {
	ts.Check(ts.Exec("holdfast", "stat", "--json", obj))
	var st struct{ Object string }
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &st))
	return filepath.Join(ts.Getenv("HOLDFAST_HOME"), "store", st.Object[:2], st.Object)
}
