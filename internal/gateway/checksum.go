package gateway

import (
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/s3api/utils"
	"github.com/versity/versitygw/s3response"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/repo"
)

// Full-object checksums. An object stored by PutObject with one of S3's
// checksum algorithms keeps its checksum (attrChecksum, encrypted with
// the other attributes), and a GET or HEAD of the whole object with
// x-amz-checksum-mode: ENABLED returns it, so the client checks the bytes
// it receives against what it computed when it sent them. The value was
// checked against the body before the object was committed: the front
// end checks a trailing checksum, checksumReader a header. Multipart
// objects keep none (S3's are composites of the parts').

// checksumHash is the hash each stored algorithm is computed with.
var checksumHash = map[types.ChecksumAlgorithm]utils.HashType{
	types.ChecksumAlgorithmCrc32:     utils.HashTypeCRC32,
	types.ChecksumAlgorithmCrc32c:    utils.HashTypeCRC32C,
	types.ChecksumAlgorithmCrc64nvme: utils.HashTypeCRC64NVME,
	types.ChecksumAlgorithmSha1:      utils.HashTypeSha1,
	types.ChecksumAlgorithmSha256:    utils.HashTypeSha256,
}

// checksumRoom is as long as the longest attrChecksum value, a SHA-256
// composite of 10,000 parts: a placeholder that keeps room for it.
var checksumRoom = strings.Repeat("0", len("SHA256 ")+44+len("-10000"))

// keepChecksum returns body, and, if the request names a checksum to
// keep, a function that gives its attrChecksum value once body is read
// to its end: the value of a checksum header (checked by checksumReader
// at that end), or, for an algorithm whose value came in a trailer or
// not at all (x-amz-sdk-checksum-algorithm), the checksum body is hashed
// to here.
func keepChecksum(body io.Reader, in s3response.PutObjectInput) (io.Reader, func() string, error) {
	for _, h := range []struct {
		alg types.ChecksumAlgorithm
		v   *string
	}{
		{types.ChecksumAlgorithmCrc32, in.ChecksumCRC32}, {types.ChecksumAlgorithmCrc32c, in.ChecksumCRC32C},
		{types.ChecksumAlgorithmCrc64nvme, in.ChecksumCRC64NVME}, {types.ChecksumAlgorithmSha1, in.ChecksumSHA1},
		{types.ChecksumAlgorithmSha256, in.ChecksumSHA256},
	} {
		if v := str(h.v); v != "" {
			return body, func() string { return string(h.alg) + " " + v }, nil
		}
	}
	alg := types.ChecksumAlgorithm(strings.ToUpper(string(in.ChecksumAlgorithm)))
	ht, ok := checksumHash[alg]
	if !ok {
		return body, nil, nil
	}
	hr, err := utils.NewHashReader(body, "", ht)
	if err != nil {
		return nil, nil, err
	}
	return hr, func() string { return string(alg) + " " + hr.Sum() }, nil
}

// storedChecksum returns the algorithm and value e was stored with, if
// any.
func storedChecksum(e catalog.Entry) (types.ChecksumAlgorithm, string) {
	alg, v, ok := strings.Cut(repo.Attr(e, attrChecksum), " ")
	if _, known := checksumHash[types.ChecksumAlgorithm(alg)]; !ok || !known || v == "" {
		return "", ""
	}
	return types.ChecksumAlgorithm(alg), v
}

// checksumOut points at a response's checksum fields.
type checksumOut struct {
	crc32, crc32c, crc64nvme, sha1, sha256 **string
	typ                                    *types.ChecksumType
}

// fill sets the field of the checksum e was stored with, and its type
// (a full-object checksum); it reports whether e keeps one.
func (o checksumOut) fill(e catalog.Entry) bool {
	alg, v := storedChecksum(e)
	p := map[types.ChecksumAlgorithm]**string{types.ChecksumAlgorithmCrc32: o.crc32, types.ChecksumAlgorithmCrc32c: o.crc32c,
		types.ChecksumAlgorithmCrc64nvme: o.crc64nvme, types.ChecksumAlgorithmSha1: o.sha1, types.ChecksumAlgorithmSha256: o.sha256}[alg]
	if p == nil {
		return false
	}
	*p, *o.typ = &v, types.ChecksumTypeFullObject
	return true
}
