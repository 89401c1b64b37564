package repo

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
)

// TestVerifySaysWhatSystemObjectsAre: a finding about a system object
// names it — which catalog backup, which bucket key a journal entry
// holds — from the catalog, beside its store name. Control: the same
// repository verifies clean before the provider deletes them.
func TestVerifySaysWhatSystemObjectsAre(t *testing.T) {
	e := newEnv(t)
	e.put("photos", "a", random(100))
	res, err := e.r.Backup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.mustVerifyClean()
	bks, err := e.r.cat.AllBucketKeys(context.Background())
	if err != nil || len(bks) != 1 {
		t.Fatalf("bucket keys: %+v %v", bks, err)
	}
	journal := format.StoreName(bks[0].JournalID)
	for _, name := range []string{res.Object, journal} {
		if err := os.Remove(e.storePath(name)); err != nil {
			t.Fatal(err)
		}
	}
	sum, fs := e.verify()
	want := map[string]*regexp.Regexp{
		res.Object: regexp.MustCompile(`^catalog backup 2 of 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ$`),
		journal:    regexp.MustCompile(`^key journal entry of 20\S+Z: bucket photos key v1, under root key v1$`),
	}
	if !sum.Damaged() || len(fs) != len(want) {
		t.Fatalf("verify: %+v %+v", sum, fs)
	}
	for _, f := range fs {
		if re := want[f.Name]; re == nil || f.Status != StatusMissing || !re.MatchString(f.What) {
			t.Fatalf("finding %+v: want missing, what matching %v", f, re)
		}
	}
}
