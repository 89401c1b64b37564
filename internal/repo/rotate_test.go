package repo

import (
	"bytes"
	"context"
	"testing"
)

// TestRotateBesideARunningProcess: a process that opened the repository
// before another rotated the root key and then a bucket key (keys rotate
// beside a running serve) writes under the new versions and reads old and
// new objects. The control is the same process's write before the
// rotation.
func TestRotateBesideARunningProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t) // the long-running process
	e.put("bkt", "before", []byte("written before"))

	other, err := Open(ctx, OpenOptions{Home: e.home, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := other.RotateRootKey(); err != nil || v != 2 {
		t.Fatalf("root rotation: v%d, %v", v, err)
	}
	if v, err := other.RotateBucketKey(ctx, "bkt"); err != nil || v != 2 {
		t.Fatalf("bucket rotation: v%d, %v", v, err)
	}
	other.Close()

	ent, err := e.r.Put(ctx, "bkt", "after", bytes.NewReader([]byte("written after")), PutOptions{})
	if err != nil {
		t.Fatalf("writing after another process rotated: %v", err)
	}
	if ent.KeyVersion != 2 {
		t.Errorf("the new object is under bucket key v%d, want 2", ent.KeyVersion)
	}
	for key, want := range map[string]string{"before": "written before", "after": "written after"} {
		rd, err := e.r.OpenObject(ctx, "bkt", key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var out bytes.Buffer
		_, err = rd.WriteTo(ctx, &out)
		rd.Close()
		if err != nil || out.String() != want {
			t.Errorf("%s reads %q, %v", key, out.String(), err)
		}
	}
}
