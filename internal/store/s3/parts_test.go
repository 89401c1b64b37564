package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
	fp "github.com/holdfast/holdfast/internal/testutil/faultproxy"
)

func TestPartsConformanceHTTPS(t *testing.T) {
	storetest.RunParts(t, func(t *testing.T) store.Store { return newStore(t, httpsSrv, nil) })
}

// onlyReader hides Seek, so the store sees a body it cannot read again.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestPartRequestsCarryOnlyAllowListedHeaders: every request of an object
// built from parts — create, parts with bodies that can and cannot be
// read again, the tail, completion, abort — carries only allow-listed
// headers, none of the forbidden ones, and parts go unsigned (their
// bodies stream). The control: the same observer catches a request that
// carries metadata, a tag, a checksum and a content type.
func TestPartRequestsCarryOnlyAllowListedHeaders(t *testing.T) {
	ctx := context.Background()
	h := &sentHeaders{names: map[string]int{}, types: map[string]bool{}, reqs: map[string]int{}}
	var unsigned, partReqs int
	observe := func(r *http.Request) {
		h.observe(r)
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			partReqs++
			if r.Header.Get("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD" {
				unsigned++
			}
		}
	}
	e := newFaultEnvObserved(t, observe, nil)
	p1, p2 := randomBody(1, minPartSize), randomBody(2, minPartSize+3)
	hd, err := e.s.CreateParts(ctx, "built")
	if err != nil {
		t.Fatal(err)
	}
	t1, err := e.s.UploadPart(ctx, "built", hd, 1, bytes.NewReader(p1), int64(len(p1)))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := e.s.UploadPart(ctx, "built", hd, 2, onlyReader{bytes.NewReader(p2)}, int64(len(p2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.CompleteParts(ctx, "built", hd, []store.StoredPart{{Number: 1, Token: t1}, {Number: 2, Token: t2}},
		bytes.NewReader([]byte("tail")), 4); err != nil {
		t.Fatal(err)
	}
	ha, err := e.s.CreateParts(ctx, "aborted")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.AbortParts(ctx, "aborted", ha); err != nil {
		t.Fatal(err)
	}
	got, err := readAllOf(ctx, e.s, "built", 0, -1)
	if err != nil || !bytes.Equal(got, append(append(p1, p2...), "tail"...)) {
		t.Fatalf("the built object differs (%d bytes, %v)", len(got), err)
	}
	if h.reqs["POST ?uploads"] != 2 || h.reqs["PUT ?partNumber&uploadId"] != 3 || h.reqs["POST ?uploadId"] != 1 || h.reqs["DELETE ?uploadId"] != 1 {
		t.Fatalf("requests: %v", h.reqs)
	}
	if partReqs != 3 || unsigned != 3 {
		t.Fatalf("%d of %d part requests unsigned, want all", unsigned, partReqs)
	}
	if bad := h.forbidden(); len(bad) != 0 {
		t.Fatalf("forbidden headers sent to the provider: %v", bad)
	}
	for k := range h.names {
		if !allowed[k] {
			t.Errorf("header %s is not on the allow-list", k)
		}
	}

	c := &sentHeaders{names: map[string]int{}, types: map[string]bool{}, reqs: map[string]int{}}
	ctl := newFaultEnvObserved(t, c.observe, nil)
	if _, err := ctl.s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(ctl.s.bucket), Key: aws.String(ctl.s.key("leaky")),
		Body: bytes.NewReader([]byte("plaintext")), Metadata: map[string]string{"project": "apollo"}, Tagging: aws.String("a=b"),
		ContentType: aws.String("text/x-secret")}); err != nil {
		t.Fatal(err)
	}
	if bad := strings.Join(c.forbidden(), " "); !strings.Contains(bad, "X-Amz-Meta-Project") || !strings.Contains(bad, "Content-Type: text/x-secret") {
		t.Fatalf("control: not caught (caught: %s)", bad)
	}
}

// TestPartSentAgainReplacesProviderPart: the provider keeps one part per
// number — a part sent again with other bytes replaces the old one, which
// is gone — and a completion naming the old bytes' token is refused with
// ErrPartMismatch and completes nothing, while the new token (the
// control) completes the new bytes.
func TestPartSentAgainReplacesProviderPart(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, httpSrv, nil)
	old, cur := randomBody(3, minPartSize), randomBody(4, minPartSize)
	h, err := s.CreateParts(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	oldTok, err := s.UploadPart(ctx, "obj", h, 1, bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	curTok, err := s.UploadPart(ctx, "obj", h, 1, bytes.NewReader(cur), int64(len(cur)))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := s.c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key("obj")), UploadId: aws.String(h)})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Parts) != 1 || aws.ToString(lp.Parts[0].ETag) != curTok || oldTok == curTok {
		t.Fatalf("provider parts after a resend: %d, ETag %s (old %s, new %s)", len(lp.Parts), aws.ToString(lp.Parts[0].ETag), oldTok, curTok)
	}
	err = s.CompleteParts(ctx, "obj", h, []store.StoredPart{{Number: 1, Token: oldTok}}, bytes.NewReader([]byte("t")), 1)
	if !errors.Is(err, store.ErrPartMismatch) {
		t.Fatalf("completing with the replaced part's token: %v, want ErrPartMismatch", err)
	}
	if _, err := s.Stat(ctx, "obj"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("a refused completion left an object: %v", err)
	}
	if err := s.CompleteParts(ctx, "obj", h, []store.StoredPart{{Number: 1, Token: curTok}}, bytes.NewReader([]byte("t")), 1); err != nil {
		t.Fatal(err)
	}
	got, err := readAllOf(ctx, s, "obj", 0, -1)
	if err != nil || !bytes.Equal(got, append(cur, 't')) {
		t.Fatalf("completed object differs: %v", err)
	}
}

// TestPartRetriedOnlyIfRewindable: a part request whose answer is lost
// (the server stored it) is sent again when its body can be read again,
// and the part completes; with a body that cannot, the part fails at once
// with ErrUnavailable (and the client sends it again: the control, with
// no fault, succeeds).
func TestPartRetriedOnlyIfRewindable(t *testing.T) {
	ctx := context.Background()
	sched := fp.Schedule{Seed: 1, Rate: 1, Mix: []fp.Kind{fp.ResetAfter}, Match: isUploadPart, Limit: 1}
	body := randomBody(5, minPartSize+100)

	e := newFaultEnv(t, sched, nil)
	h, err := e.s.CreateParts(ctx, "seekable")
	if err != nil {
		t.Fatal(err)
	}
	r0 := e.s.Stats().Retries
	tok, err := e.s.UploadPart(ctx, "seekable", h, 1, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("a rewindable part after a lost answer: %v", err)
	}
	if e.s.Stats().Retries-r0 != 1 || e.proxy.Faults().Total() != 1 {
		t.Fatalf("%d retries for %d faults", e.s.Stats().Retries-r0, e.proxy.Faults().Total())
	}
	if err := e.s.CompleteParts(ctx, "seekable", h, []store.StoredPart{{Number: 1, Token: tok}}, bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}

	e = newFaultEnv(t, sched, nil)
	h, err = e.s.CreateParts(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s.UploadPart(ctx, "stream", h, 1, onlyReader{bytes.NewReader(body)}, int64(len(body)))
	if !errors.Is(err, store.ErrUnavailable) || e.proxy.Faults().Total() != 1 {
		t.Fatalf("a streamed part after a lost answer: %v (%d faults), want ErrUnavailable", err, e.proxy.Faults().Total())
	}
	tok, err = e.s.UploadPart(ctx, "stream", h, 1, onlyReader{bytes.NewReader(body)}, int64(len(body)))
	if err != nil {
		t.Fatalf("control: the same part sent again: %v", err)
	}
	if err := e.s.CompleteParts(ctx, "stream", h, []store.StoredPart{{Number: 1, Token: tok}}, bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	got, err := readAllOf(ctx, e.s, "stream", 0, -1)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("streamed object differs: %v", err)
	}
}
