package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// newHash is each algorithm's hash, computed here independently of the
// gateway (CRC-64/NVME: Go's reflected table for its polynomial).
var newHash = map[types.ChecksumAlgorithm]func() hash.Hash{
	types.ChecksumAlgorithmCrc32:     func() hash.Hash { return crc32.NewIEEE() },
	types.ChecksumAlgorithmCrc32c:    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	types.ChecksumAlgorithmCrc64nvme: func() hash.Hash { return crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5)) },
	types.ChecksumAlgorithmSha1:      func() hash.Hash { return sha1.New() },
	types.ChecksumAlgorithmSha256:    func() hash.Hash { return sha256.New() },
}

func digest(alg types.ChecksumAlgorithm, b []byte) []byte {
	h := newHash[alg]()
	h.Write(b)
	return h.Sum(nil)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// wantChecksum is S3's checksum of an object uploaded in parts: of the
// whole object (FULL_OBJECT), or of the parts' checksums, "-N"
// (COMPOSITE).
func wantChecksum(alg types.ChecksumAlgorithm, typ types.ChecksumType, parts [][]byte) string {
	if typ == types.ChecksumTypeFullObject {
		return b64(digest(alg, bytes.Join(parts, nil)))
	}
	var cat []byte
	for _, p := range parts {
		cat = append(cat, digest(alg, p)...)
	}
	return fmt.Sprintf("%s-%d", b64(digest(alg, cat)), len(parts))
}

// algValue is a response's checksum in algorithm alg.
func algValue(alg types.ChecksumAlgorithm, crc32, crc32c, crc64nvme, sha1, sha256 *string) string {
	return aws.ToString(map[types.ChecksumAlgorithm]*string{types.ChecksumAlgorithmCrc32: crc32, types.ChecksumAlgorithmCrc32c: crc32c,
		types.ChecksumAlgorithmCrc64nvme: crc64nvme, types.ChecksumAlgorithmSha1: sha1, types.ChecksumAlgorithmSha256: sha256}[alg])
}

// flipTransport flips one byte of GET response bodies while on is set:
// damage after the gateway, which only the client's checksum can catch.
type flipTransport struct {
	rt http.RoundTripper
	on *atomic.Bool
}

func (f flipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.rt.RoundTrip(r)
	if err == nil && f.on.Load() && r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		resp.Body = &flipBody{rc: resp.Body, at: 1000}
	}
	return resp, err
}

type flipBody struct {
	rc  io.ReadCloser
	n   int64
	at  int64
	did bool
}

func (b *flipBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if !b.did && b.n <= b.at && b.at < b.n+int64(n) {
		p[b.at-b.n] ^= 1
		b.did = true
	}
	b.n += int64(n)
	return n, err
}

func (b *flipBody) Close() error { return b.rc.Close() }

// TestMultipartChecksums: a multipart upload created with a checksum
// algorithm keeps S3's checksum. The SDK's transfer manager uploads with
// it (COMPOSITE and FULL_OBJECT, parts' checksums in trailers); the parts'
// checksums are answered by UploadPart and ListParts, and the object's by
// CompleteMultipartUpload, a GET or HEAD in checksum mode and
// GetObjectAttributes, all equal to what is computed here from the bytes.
// A GET in checksum mode of a FULL_OBJECT object is validated by the SDK:
// a byte damaged in transit fails the read (control: the same GET
// undamaged reads; damage without checksum mode goes unnoticed, so the
// check is the checksum's). An upload without an algorithm keeps none.
// Nothing of the checksums reaches the provider.
func TestMultipartChecksums(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	k := g.acc.keys[0]
	var flip atomic.Bool
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(g.url), Region: "us-east-1", UsePathStyle: true, RetryMaxAttempts: 1,
		HTTPClient:  &http.Client{Transport: flipTransport{rt: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}, on: &flip}},
		Credentials: credentials.NewStaticCredentialsProvider(k.id, k.secret, ""),
	})
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("sums")}); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{random(t, 5<<20), random(t, 5<<20), random(t, 1<<20+3)}
	whole := bytes.Join(parts, nil)
	var values []string // every checksum answered, to look for in the store

	for _, tc := range []struct {
		alg types.ChecksumAlgorithm
		typ types.ChecksumType
	}{
		{types.ChecksumAlgorithmCrc32, types.ChecksumTypeComposite},
		{types.ChecksumAlgorithmCrc32, types.ChecksumTypeFullObject},
		{types.ChecksumAlgorithmCrc32c, types.ChecksumTypeFullObject},
		{types.ChecksumAlgorithmCrc64nvme, types.ChecksumTypeFullObject},
		{types.ChecksumAlgorithmSha1, types.ChecksumTypeComposite},
		{types.ChecksumAlgorithmSha256, types.ChecksumTypeComposite},
	} {
		key := string(tc.alg) + "-" + string(tc.typ)
		t.Run(key, func(t *testing.T) {
			tm := transfermanager.New(c, func(o *transfermanager.Options) {
				o.PartSizeBytes, o.MultipartUploadThreshold, o.Concurrency = 5<<20, 5<<20, 2
				o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithm(tc.alg)
			})
			up, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String("sums"), Key: aws.String(key),
				Body: bytes.NewReader(whole), ChecksumType: tmtypes.ChecksumType(tc.typ)})
			if err != nil {
				t.Fatalf("transfer manager upload: %v", err)
			}
			want := wantChecksum(tc.alg, tc.typ, parts)
			values = append(values, want)
			if got := algValue(tc.alg, up.ChecksumCRC32, up.ChecksumCRC32C, up.ChecksumCRC64NVME, up.ChecksumSHA1, up.ChecksumSHA256); got != want {
				t.Errorf("completion's checksum %q, want %q", got, want)
			}
			for i, p := range up.CompletedParts {
				if tc.alg == types.ChecksumAlgorithmCrc64nvme {
					break // the transfer manager's parts have no field for it (ListParts: TestMultipartChecksumRefusals)
				}
				got := algValue(tc.alg, p.ChecksumCRC32, p.ChecksumCRC32C, nil, p.ChecksumSHA1, p.ChecksumSHA256)
				if w := b64(digest(tc.alg, parts[i])); got != w {
					t.Errorf("part %d's checksum from UploadPart %q, want %q", i+1, got, w)
				}
				values = append(values, got)
			}
			h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("sums"), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatal(err)
			}
			if got := algValue(tc.alg, h.ChecksumCRC32, h.ChecksumCRC32C, h.ChecksumCRC64NVME, h.ChecksumSHA1, h.ChecksumSHA256); got != want || h.ChecksumType != tc.typ {
				t.Errorf("HEAD in checksum mode: %q %s, want %q %s", got, h.ChecksumType, want, tc.typ)
			}
			at, err := c.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{Bucket: aws.String("sums"), Key: aws.String(key),
				ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesChecksum, types.ObjectAttributesObjectParts}})
			if err != nil {
				t.Fatal(err)
			}
			if cs := at.Checksum; cs == nil || cs.ChecksumType != tc.typ ||
				algValue(tc.alg, cs.ChecksumCRC32, cs.ChecksumCRC32C, cs.ChecksumCRC64NVME, cs.ChecksumSHA1, cs.ChecksumSHA256) != want {
				t.Errorf("GetObjectAttributes checksum: %+v, want %q %s", cs, want, tc.typ)
			}
			if at.ObjectParts == nil || len(at.ObjectParts.Parts) != 3 {
				t.Errorf("GetObjectAttributes parts: %+v", at.ObjectParts)
			}
			get := func(damaged, mode bool) error {
				t.Helper()
				flip.Store(damaged)
				defer flip.Store(false)
				in := &s3.GetObjectInput{Bucket: aws.String("sums"), Key: aws.String(key)}
				if mode {
					in.ChecksumMode = types.ChecksumModeEnabled
				}
				out, err := c.GetObject(ctx, in, func(o *s3.Options) {
					if !mode {
						o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
					}
				})
				if err != nil {
					return err
				}
				defer out.Body.Close()
				got, err := io.ReadAll(out.Body)
				if err == nil && !damaged && !bytes.Equal(got, whole) {
					t.Errorf("GET: %d bytes differ", len(got))
				}
				if got := algValue(tc.alg, out.ChecksumCRC32, out.ChecksumCRC32C, out.ChecksumCRC64NVME, out.ChecksumSHA1, out.ChecksumSHA256); mode && got != want {
					t.Errorf("GET in checksum mode: checksum %q, want %q", got, want)
				}
				return err
			}
			if err := get(false, true); err != nil {
				t.Errorf("GET in checksum mode: %v", err)
			}
			if err := get(true, false); err != nil {
				t.Errorf("damaged GET without checksum mode (nothing checks): %v", err)
			}
			err = get(true, true)
			if tc.typ == types.ChecksumTypeFullObject && (err == nil || !strings.Contains(err.Error(), "checksum")) {
				t.Errorf("damaged GET in checksum mode: %v, want the SDK's checksum mismatch", err)
			}
			if tc.typ == types.ChecksumTypeComposite && err != nil { // the SDK cannot check a composite
				t.Errorf("damaged GET of a composite in checksum mode: %v", err)
			}
		})
	}

	// Without an algorithm, the object keeps none (as a PutObject without
	// one), whatever the parts carried.
	tm := transfermanager.New(c, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.MultipartUploadThreshold = 5<<20, 5<<20
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	if _, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String("sums"), Key: aws.String("none"), Body: bytes.NewReader(whole)}); err != nil {
		t.Fatal(err)
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("sums"), Key: aws.String("none"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || h.ChecksumType != "" || h.ChecksumCRC32 != nil || h.ChecksumCRC64NVME != nil || !strings.HasSuffix(aws.ToString(h.ETag), `-3"`) {
		t.Errorf("HEAD of an object uploaded in parts without a checksum: %q %q, etag %s, %v", h.ChecksumType, aws.ToString(h.ChecksumCRC32), aws.ToString(h.ETag), err)
	}

	// The provider holds none of the checksums.
	err = filepath.WalkDir(g.store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) || bytes.Contains(b, []byte(strings.Split(v, "-")[0])) {
				t.Errorf("store file %s holds the checksum %q", p, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != 6*4-3 {
		t.Errorf("%d checksums looked for, want 21", len(values))
	}
}

// TestMultipartChecksumRefusals: what S3 refuses in a multipart upload
// with a checksum, each beside the accepted request that differs only in
// the thing tested. A part in another algorithm, or (COMPOSITE) with
// none; an algorithm Holdfast does not keep; a completion whose part
// carries a wrong checksum, none (COMPOSITE), two, or one in another
// algorithm; another checksum type; a wrong object checksum; a wrong
// x-amz-mp-object-size. After the refusals the upload completes with the
// right list, and ListParts and UploadPartCopy answer the parts'
// checksums.
func TestMultipartChecksumRefusals(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("sums")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("sha512"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha512}); errCode(err) != "InvalidRequest" {
		t.Errorf("an upload with SHA-512: %v", err)
	}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("k"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil || cu.ChecksumAlgorithm != types.ChecksumAlgorithmCrc32c || cu.ChecksumType != types.ChecksumTypeComposite {
		t.Fatalf("an upload with CRC32C: %+v %v", cu, err)
	}
	p1, p2 := random(t, 5<<20), random(t, 77777)
	none := func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired }
	upload := func(n int32, b []byte, alg types.ChecksumAlgorithm) (*s3.UploadPartOutput, error) {
		in := &s3.UploadPartInput{Bucket: aws.String("sums"), Key: aws.String("k"), UploadId: cu.UploadId, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(b), ChecksumAlgorithm: alg}
		if alg == "" {
			return c.UploadPart(ctx, in, none)
		}
		return c.UploadPart(ctx, in)
	}
	// The refused parts are small: a request refused before its body is
	// read is answered and its connection closed, and a client still
	// sending megabytes then meets a reset instead of the answer (as with
	// S3), which a test client that does not retry reports as such.
	for _, alg := range []types.ChecksumAlgorithm{types.ChecksumAlgorithmSha256, ""} {
		if _, err := upload(1, p2, alg); errCode(err) != "InvalidRequest" {
			t.Errorf("a part with checksum %q in a CRC32C upload: %v", alg, err)
		}
	}
	u1, err := upload(1, p1, types.ChecksumAlgorithmCrc32c)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := upload(2, p2, types.ChecksumAlgorithmCrc32c)
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := b64(digest(types.ChecksumAlgorithmCrc32c, p1)), b64(digest(types.ChecksumAlgorithmCrc32c, p2))
	if aws.ToString(u1.ChecksumCRC32C) != s1 || aws.ToString(u2.ChecksumCRC32C) != s2 {
		t.Errorf("UploadPart's checksums %q %q, want %q %q", aws.ToString(u1.ChecksumCRC32C), aws.ToString(u2.ChecksumCRC32C), s1, s2)
	}
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("sums"), Key: aws.String("k"), UploadId: cu.UploadId})
	if err != nil || lp.ChecksumAlgorithm != types.ChecksumAlgorithmCrc32c || lp.ChecksumType != types.ChecksumTypeComposite || len(lp.Parts) != 2 ||
		aws.ToString(lp.Parts[0].ChecksumCRC32C) != s1 || aws.ToString(lp.Parts[1].ChecksumCRC32C) != s2 {
		t.Fatalf("ListParts: %+v %v", lp, err)
	}

	want := wantChecksum(types.ChecksumAlgorithmCrc32c, types.ChecksumTypeComposite, [][]byte{p1, p2})
	good := func() *s3.CompleteMultipartUploadInput {
		return &s3.CompleteMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("k"), UploadId: cu.UploadId,
			MpuObjectSize: aws.Int64(int64(len(p1) + len(p2))), ChecksumCRC32C: aws.String(strings.Split(want, "-")[0]),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
				{PartNumber: aws.Int32(1), ETag: u1.ETag, ChecksumCRC32C: aws.String(s1)},
				{PartNumber: aws.Int32(2), ETag: u2.ETag, ChecksumCRC32C: aws.String(s2)}}}}
	}
	for _, tc := range []struct {
		name, want string
		mod        func(in *s3.CompleteMultipartUploadInput)
	}{
		{"a wrong part checksum", "InvalidPart", func(in *s3.CompleteMultipartUploadInput) { in.MultipartUpload.Parts[0].ChecksumCRC32C = aws.String(s2) }},
		{"no part checksum", "InvalidRequest", func(in *s3.CompleteMultipartUploadInput) { in.MultipartUpload.Parts[0].ChecksumCRC32C = nil }},
		{"two part checksums", "InvalidArgument", func(in *s3.CompleteMultipartUploadInput) { in.MultipartUpload.Parts[0].ChecksumCRC32 = aws.String(s1) }},
		{"a part checksum in another algorithm", "BadDigest", func(in *s3.CompleteMultipartUploadInput) {
			in.MultipartUpload.Parts[0].ChecksumCRC32C, in.MultipartUpload.Parts[0].ChecksumCRC32 = nil, aws.String(s1)
		}},
		{"another checksum type", "InvalidRequest", func(in *s3.CompleteMultipartUploadInput) { in.ChecksumType = types.ChecksumTypeFullObject }},
		{"a wrong object checksum", "BadDigest", func(in *s3.CompleteMultipartUploadInput) { in.ChecksumCRC32C = aws.String(s1 + "-2") }},
		{"a wrong object size", "InvalidRequest", func(in *s3.CompleteMultipartUploadInput) { in.MpuObjectSize = aws.Int64(5) }},
	} {
		in := good()
		tc.mod(in)
		if _, err := c.CompleteMultipartUpload(ctx, in); errCode(err) != tc.want {
			t.Errorf("completion with %s: %v, want %s", tc.name, err, tc.want)
		}
	}
	done, err := c.CompleteMultipartUpload(ctx, good())
	if err != nil {
		t.Fatalf("the right completion, after the refused ones: %v", err)
	}
	if aws.ToString(done.ChecksumCRC32C) != want || done.ChecksumType != types.ChecksumTypeComposite {
		t.Errorf("completion's checksum %q %s, want %q COMPOSITE", aws.ToString(done.ChecksumCRC32C), done.ChecksumType, want)
	}

	// UploadPartCopy into an upload with a checksum: the copied part's is
	// recorded and answered, and the completion uses it.
	cu2, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("copied"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("sums"), Key: aws.String("copied"), UploadId: cu2.UploadId,
		PartNumber: aws.Int32(1), CopySource: aws.String("sums/k"), CopySourceRange: aws.String(fmt.Sprintf("bytes=0-%d", len(p1)-1))})
	if err != nil {
		t.Fatal(err)
	}
	if w := b64(digest(types.ChecksumAlgorithmCrc32, p1)); aws.ToString(cp.CopyPartResult.ChecksumCRC32) != w {
		t.Errorf("UploadPartCopy's checksum %q, want %q", aws.ToString(cp.CopyPartResult.ChecksumCRC32), w)
	}
	u2b, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("sums"), Key: aws.String("copied"), UploadId: cu2.UploadId,
		PartNumber: aws.Int32(2), Body: bytes.NewReader(p2), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		t.Fatal(err)
	}
	done, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("copied"), UploadId: cu2.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: cp.CopyPartResult.ETag, ChecksumCRC32: cp.CopyPartResult.ChecksumCRC32},
			{PartNumber: aws.Int32(2), ETag: u2b.ETag, ChecksumCRC32: u2b.ChecksumCRC32}}}})
	if err != nil {
		t.Fatal(err)
	}
	if w := wantChecksum(types.ChecksumAlgorithmCrc32, types.ChecksumTypeComposite, [][]byte{p1, p2}); aws.ToString(done.ChecksumCRC32) != w {
		t.Errorf("the copied upload's checksum %q, want %q", aws.ToString(done.ChecksumCRC32), w)
	}

	// A FULL_OBJECT upload: parts in CRC64NVME are listed with theirs, and
	// the completion may leave them out.
	cu3, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("full"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme})
	if err != nil || cu3.ChecksumType != types.ChecksumTypeFullObject {
		t.Fatalf("a CRC64NVME upload: %+v %v", cu3, err)
	}
	var list []types.CompletedPart
	for i, p := range [][]byte{p1, p2} {
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("sums"), Key: aws.String("full"), UploadId: cu3.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme})
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: o.ETag})
	}
	lp, err = c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("sums"), Key: aws.String("full"), UploadId: cu3.UploadId})
	if err != nil || len(lp.Parts) != 2 || aws.ToString(lp.Parts[1].ChecksumCRC64NVME) != b64(digest(types.ChecksumAlgorithmCrc64nvme, p2)) {
		t.Fatalf("ListParts of a CRC64NVME upload: %+v %v", lp, err)
	}
	done, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("sums"), Key: aws.String("full"), UploadId: cu3.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: list}})
	if w := b64(digest(types.ChecksumAlgorithmCrc64nvme, append(append([]byte{}, p1...), p2...))); err != nil || aws.ToString(done.ChecksumCRC64NVME) != w {
		t.Errorf("CRC64NVME completion: %q, want %q, %v", aws.ToString(done.ChecksumCRC64NVME), w, err)
	}
}
