package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/keys/keyshare"
	"github.com/holdfast/holdfast/internal/testutil/softhsm"
)

// TestKeysScripts runs testdata/keys: k-of-n backup and restore of the
// keyring, keys passwd, and the PKCS#11 key ceremony and recovery drill
// against SoftHSM2 (a token directory per script).
func TestKeysScripts(t *testing.T) {
	if err := softhsm.Available(); err != nil {
		t.Fatal(err) // scripts/test.sh installs softhsm2: missing is a failure, not a skip
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/keys",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOLDFAST_HOME", filepath.Join(e.WorkDir, "home"))
			h, err := softhsm.NewEnv(filepath.Join(e.WorkDir, ".softhsm"))
			if err != nil {
				return err
			}
			e.Values["hsm"] = h
			e.Setenv("SOFTHSM2_CONF", h.Conf)
			e.Setenv("HSMURI", softhsm.URI("hf-token", "holdfast-root"))
			e.Setenv("HSMURI2", softhsm.URI("hf-token2", "holdfast-root"))
			e.Setenv("TESTPIN", softhsm.PIN)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"code":         cmdCode,
			"mkrandom":     cmdMkrandom,
			"hsmtoken":     cmdHSMToken,
			"shares":       cmdShares,
			"corruptshare": cmdCorruptShare,
		},
	})
}

// hsmtoken init|delete LABEL makes or deletes a SoftHSM2 token.
func cmdHSMToken(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: hsmtoken init|delete LABEL")
	}
	h := ts.Value("hsm").(*softhsm.Env)
	switch args[0] {
	case "init":
		ts.Check(h.InitToken(args[1]))
	case "delete":
		ts.Check(h.DeleteToken(args[1]))
	default:
		ts.Fatalf("hsmtoken: unknown action %q", args[0])
	}
}

// shares [PREFIX] DIR sets PREFIX1..PREFIXn (default S1..) to the share
// files in DIR by share index, and SUM1..SUMn (PREFIX+"SUM"...) to the
// checksums they show.
func cmdShares(ts *testscript.TestScript, neg bool, args []string) {
	prefix := "S"
	if len(args) == 2 {
		prefix, args = args[0], args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: shares [PREFIX] DIR")
	}
	dir := ts.MkAbs(args[0])
	ents, err := os.ReadDir(dir)
	ts.Check(err)
	type one struct {
		idx  int
		path string
		sum  string
	}
	var all []one
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		ts.Check(err)
		s, err := keyshare.Parse(p, b)
		ts.Check(err)
		all = append(all, one{s.Index, p, s.Checksum})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].idx < all[j].idx })
	for _, s := range all {
		ts.Setenv(prefix+strconv.Itoa(s.idx), s.path)
		ts.Setenv(prefix+"SUM"+strconv.Itoa(s.idx), s.sum)
	}
}

// corruptshare SRC DST copies a share file with one data digit changed.
func cmdCorruptShare(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: corruptshare SRC DST")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	i := bytes.Index(b, []byte("data:\n")) + len("data:\n")
	for b[i] == ' ' {
		i++
	}
	i += 5
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	if !strings.Contains(string(b), "checksum:") {
		ts.Fatalf("not a share file")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o600))
}
