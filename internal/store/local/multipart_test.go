package local

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

func TestPartsConformance(t *testing.T) {
	storetest.RunParts(t, func(t *testing.T) store.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// entries lists every file and directory under dir, relative to it.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPartsLeaveNothing: after a completion and after an abort, the
// directory holds the object and nothing else of the construction: no
// part file, no upload directory, no temporary file. A part sent again
// keeps both files until the old one is deleted (the control for the
// deletion).
func TestPartsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.CreateParts(ctx, "abc")
	if err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(dir, uploadsDirName, "abc-"+h)
	old, err := s.UploadPart(ctx, "abc", h, 1, bytes.NewReader([]byte("first")), 5)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.UploadPart(ctx, "abc", h, 1, bytes.NewReader([]byte("again")), 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(t, up); len(got) != 3 { // ".", both parts
		t.Fatalf("upload directory holds %v, want both parts", got)
	}
	if err := s.DeletePart(ctx, "abc", h, store.StoredPart{Number: 1, Token: old}); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, up); len(got) != 2 || got[1] != cur {
		t.Fatalf("after deleting the old part: %v", got)
	}
	if err := s.DeletePart(ctx, "abc", h, store.StoredPart{Number: 1, Token: "../../x"}); err == nil {
		t.Fatal("DeletePart took a token that leaves the directory")
	}
	if err := s.CompleteParts(ctx, "abc", h, []store.StoredPart{{Number: 1, Token: cur}}, bytes.NewReader([]byte("!")), 1); err != nil {
		t.Fatal(err)
	}
	before := entries(t, dir)
	want := []string{".", ".tmp", ".uploads", "ab", "ab/abc"}
	if len(before) != len(want) {
		t.Fatalf("after completion the directory holds %v, want %v", before, want)
	}
	for i := range want {
		if before[i] != want[i] {
			t.Fatalf("after completion the directory holds %v, want %v", before, want)
		}
	}
	h2, err := s.CreateParts(ctx, "def")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "def", h2, 1, bytes.NewReader(make([]byte, 100)), 100); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortParts(ctx, "def", h2); err != nil {
		t.Fatal(err)
	}
	if after := entries(t, dir); len(after) != len(before) {
		t.Fatalf("after an abort the directory holds %v, before it %v", after, before)
	}
	if _, err := s.uploadDir("x", "abc", "../h"); err == nil {
		t.Fatal("a handle that leaves the uploads directory was accepted")
	}
}
