package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/s3api/utils"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/repo"
)

// Checksums, with S3's algorithms (CRC32, CRC32C, CRC64NVME, SHA-1,
// SHA-256). An object keeps the checksum the client had checked when it
// stored it (attrChecksum, "ALGORITHM VALUE", encrypted with the other
// attributes), and a GET or HEAD of the whole object with
// x-amz-checksum-mode: ENABLED returns it, so the client checks the bytes
// it receives against what it computed when it sent them.
//
//   - PutObject: the value was checked against the body before the object
//     was committed (the front end checks a trailing checksum,
//     checksumReader a header); type FULL_OBJECT.
//   - Multipart: CreateMultipartUpload names the algorithm and type
//     (attrUploadChecksum until completion). Each part's checksum is
//     checked the same way and recorded with the part (on premises, in
//     the catalog); ListParts answers it. The completion checks the
//     client's list against the recorded checksums and keeps the
//     object's: for COMPOSITE, the checksum of the parts' checksums
//     followed by "-N"; for FULL_OBJECT (the CRCs), the parts' CRCs
//     combined into the whole object's.
//
// The parts' own checksums are not kept after completion (a manifest has
// room for the object's, not for 10,000 parts').

// checksumHash is the hash each stored algorithm is computed with.
var checksumHash = map[types.ChecksumAlgorithm]utils.HashType{
	types.ChecksumAlgorithmCrc32:     utils.HashTypeCRC32,
	types.ChecksumAlgorithmCrc32c:    utils.HashTypeCRC32C,
	types.ChecksumAlgorithmCrc64nvme: utils.HashTypeCRC64NVME,
	types.ChecksumAlgorithmSha1:      utils.HashTypeSha1,
	types.ChecksumAlgorithmSha256:    utils.HashTypeSha256,
}

// attrUploadChecksum is a multipart upload's checksum algorithm and type,
// "ALGORITHM TYPE", from its creation to its completion (which removes it
// and sets attrChecksum).
const attrUploadChecksum = "upload-checksum"

// checksumRoom is as long as the longest attrChecksum value, a SHA-256
// composite of 10,000 parts: a placeholder that keeps room for it.
var checksumRoom = strings.Repeat("0", len("SHA256 ")+44+len("-10000"))

// requestSums are a request's x-amz-checksum-* header values by
// algorithm.
type requestSums map[types.ChecksumAlgorithm]*string

func (s requestSums) value(alg types.ChecksumAlgorithm) string { return str(s[alg]) }

// sumAtEnd returns body, and a function that gives the attrChecksum value
// for algorithm alg once body is read to its end: given, the value of the
// request's header (which checksumReader checks at that end), or, when
// the value came in a trailer (the front end checks it) or not at all,
// the checksum body is hashed to here.
func sumAtEnd(body io.Reader, alg types.ChecksumAlgorithm, given string) (io.Reader, func() string, error) {
	if given != "" {
		return body, func() string { return string(alg) + " " + given }, nil
	}
	hr, err := utils.NewHashReader(body, "", checksumHash[alg])
	if err != nil {
		return nil, nil, err
	}
	return hr, func() string { return string(alg) + " " + hr.Sum() }, nil
}

// requestAlgorithm is the algorithm a request's checksum is in, if it is
// one of S3's five: the header's, or the trailer's or
// x-amz-sdk-checksum-algorithm's (the front end gives them as alg).
func requestAlgorithm(alg types.ChecksumAlgorithm, sums requestSums) types.ChecksumAlgorithm {
	for a := range checksumHash {
		if sums.value(a) != "" {
			return a
		}
	}
	alg = types.ChecksumAlgorithm(strings.ToUpper(string(alg)))
	if _, ok := checksumHash[alg]; ok {
		return alg
	}
	return ""
}

// keepChecksum returns body, and, if the request names a checksum to
// keep, a function that gives its attrChecksum value once body is read
// to its end (sumAtEnd).
func keepChecksum(body io.Reader, in s3response.PutObjectInput) (io.Reader, func() string, error) {
	sums := requestSums{types.ChecksumAlgorithmCrc32: in.ChecksumCRC32, types.ChecksumAlgorithmCrc32c: in.ChecksumCRC32C,
		types.ChecksumAlgorithmCrc64nvme: in.ChecksumCRC64NVME, types.ChecksumAlgorithmSha1: in.ChecksumSHA1,
		types.ChecksumAlgorithmSha256: in.ChecksumSHA256}
	alg := requestAlgorithm(in.ChecksumAlgorithm, sums)
	if alg == "" {
		return body, nil, nil
	}
	return sumAtEnd(body, alg, sums.value(alg))
}

// parseChecksum splits an attrChecksum value (or a part's) into its
// algorithm and value; "" if it holds none of S3's.
func parseChecksum(v string) (types.ChecksumAlgorithm, string) {
	alg, val, ok := strings.Cut(v, " ")
	if _, known := checksumHash[types.ChecksumAlgorithm(alg)]; !ok || !known || val == "" {
		return "", ""
	}
	return types.ChecksumAlgorithm(alg), val
}

// storedChecksum returns the algorithm and value e was stored with, if
// any.
func storedChecksum(e catalog.Entry) (types.ChecksumAlgorithm, string) {
	return parseChecksum(repo.Attr(e, attrChecksum))
}

// checksumOut points at a response's checksum fields.
type checksumOut struct {
	crc32, crc32c, crc64nvme, sha1, sha256 **string
	typ                                    *types.ChecksumType // nil: the response has no type
}

// set sets the field of algorithm alg to v and, if the response has one,
// the type: COMPOSITE for a multipart composite ("…-N"), else
// FULL_OBJECT. It reports whether alg is one of S3's.
func (o checksumOut) set(alg types.ChecksumAlgorithm, v string) bool {
	p := map[types.ChecksumAlgorithm]**string{types.ChecksumAlgorithmCrc32: o.crc32, types.ChecksumAlgorithmCrc32c: o.crc32c,
		types.ChecksumAlgorithmCrc64nvme: o.crc64nvme, types.ChecksumAlgorithmSha1: o.sha1, types.ChecksumAlgorithmSha256: o.sha256}[alg]
	if p == nil {
		return false
	}
	*p = &v
	if o.typ != nil {
		*o.typ = types.ChecksumTypeFullObject
		if strings.Contains(v, "-") { // never in base64
			*o.typ = types.ChecksumTypeComposite
		}
	}
	return true
}

// fill sets the field of the checksum e was stored with, and its type;
// it reports whether e keeps one.
func (o checksumOut) fill(e catalog.Entry) bool {
	return o.set(storedChecksum(e))
}

// ---- multipart ----

// uploadChecksum parses an attrUploadChecksum value.
func uploadChecksum(v string) (types.ChecksumAlgorithm, types.ChecksumType) {
	alg, typ, _ := strings.Cut(v, " ")
	if _, ok := checksumHash[types.ChecksumAlgorithm(alg)]; !ok {
		return "", ""
	}
	return types.ChecksumAlgorithm(alg), types.ChecksumType(typ)
}

// newUploadChecksum is the attrUploadChecksum value of an upload created
// with algorithm alg and type typ (the front end has checked that the two
// go together and defaulted the type), or "" for none. An algorithm
// other than S3's five (the newer SHA-512, MD5, XXHASH*) is refused:
// Holdfast keeps none of those.
func newUploadChecksum(alg types.ChecksumAlgorithm, typ types.ChecksumType) (string, error) {
	alg = types.ChecksumAlgorithm(strings.ToUpper(string(alg)))
	if alg == "" {
		return "", nil
	}
	if _, ok := checksumHash[alg]; !ok {
		return "", s3err.APIError{Code: "InvalidRequest", HTTPStatusCode: http.StatusBadRequest,
			Description: "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"}
	}
	if typ == "" {
		typ = types.ChecksumTypeComposite
		if alg == types.ChecksumAlgorithmCrc64nvme {
			typ = types.ChecksumTypeFullObject
		}
	}
	return string(alg) + " " + string(typ), nil
}

// partChecksum returns body, and a function that gives the value to
// record with the part once body is read to its end, or nil: the checksum
// in the upload's algorithm (mpAlg, of type mpType) when it has one, else
// the request's own, if any (answered, not recorded: recorded reports
// which). A request's checksum in another algorithm than the upload's is
// refused, and so is none for a COMPOSITE upload, whose checksum is made
// of its parts'.
func partChecksum(body io.Reader, mpAlg types.ChecksumAlgorithm, mpType types.ChecksumType, reqAlg types.ChecksumAlgorithm,
	sums requestSums) (_ io.Reader, sum func() string, recorded bool, err error) {
	switch {
	case mpAlg != "" && reqAlg != "" && reqAlg != mpAlg:
		return nil, nil, false, s3err.GetChecksumTypeMismatchErr(mpAlg, reqAlg)
	case mpAlg != "" && reqAlg == "" && mpType == types.ChecksumTypeComposite:
		return nil, nil, false, s3err.GetChecksumTypeMismatchErr(mpAlg, "null")
	case mpAlg != "":
		body, sum, err = sumAtEnd(body, mpAlg, sums.value(mpAlg))
		return body, sum, true, err
	case reqAlg != "":
		body, sum, err = sumAtEnd(body, reqAlg, sums.value(reqAlg))
		return body, sum, false, err
	}
	return body, nil, false, nil
}

// completedPartSums are the checksum values of a completion list's parts.
func completedPartSums(p types.CompletedPart) requestSums {
	return requestSums{types.ChecksumAlgorithmCrc32: p.ChecksumCRC32, types.ChecksumAlgorithmCrc32c: p.ChecksumCRC32C,
		types.ChecksumAlgorithmCrc64nvme: p.ChecksumCRC64NVME, types.ChecksumAlgorithmSha1: p.ChecksumSHA1,
		types.ChecksumAlgorithmSha256: p.ChecksumSHA256}
}

// completionChecksum returns, for the completion of upload id created
// with algorithm mpAlg and type mpType, the function that checks the
// client's list against the chosen parts (repo.CompleteOptions.Attrs) and
// gives the object's attributes: attrChecksum (the object's checksum, as
// S3 makes it from the parts') instead of attrUploadChecksum. As S3 does,
// it refuses a list whose parts carry a checksum other than the part's,
// or (COMPOSITE, which is made of them) none; an object checksum sent
// with the completion that is not the object's; and an
// x-amz-mp-object-size other than the object's. (A FULL_OBJECT list may
// leave the parts' checksums out: the SDK's transfer manager does for
// CRC64NVME, which it has no field for.) Its result depends on the
// parts alone, as the repository needs.
func completionChecksum(in *s3.CompleteMultipartUploadInput, mpAlg types.ChecksumAlgorithm, mpType types.ChecksumType) func([]repo.PartInfo) (map[string]string, error) {
	id := str(in.UploadId)
	list := in.MultipartUpload.Parts
	return func(parts []repo.PartInfo) (map[string]string, error) {
		var total int64
		for _, p := range parts {
			total += p.Size
		}
		if in.MpuObjectSize != nil && *in.MpuObjectSize != total {
			return nil, s3err.GetIncorrectMpObjectSizeErr(*in.MpuObjectSize, total)
		}
		if mpAlg == "" {
			return nil, nil
		}
		var composite *utils.CompositeChecksumReader
		if mpType == types.ChecksumTypeComposite {
			var err error
			if composite, err = utils.NewCompositeChecksumReader(checksumHash[mpAlg]); err != nil {
				return nil, err
			}
		}
		var full string
		for i, p := range parts {
			pn := int32(p.Number)
			sums := completedPartSums(list[i])
			n := 0
			for a := range checksumHash {
				if sums.value(a) != "" {
					n++
				}
			}
			if n > 1 {
				return nil, s3err.GetInvalidArgumentErr(s3err.InvalidArgChecksumPart, fmt.Sprint(pn))
			}
			if n == 0 && mpType == types.ChecksumTypeComposite {
				return nil, s3err.APIError{Code: "InvalidRequest", HTTPStatusCode: http.StatusBadRequest,
					Description: fmt.Sprintf("The upload was created using a %s checksum. The complete request must include the checksum for each part. It was missing for part %d in the request.",
						strings.ToLower(string(mpAlg)), pn)}
			}
			alg, val := parseChecksum(p.Checksum)
			if sent := sums.value(mpAlg); alg != mpAlg || n > 0 && sent != val {
				if sent == "" { // a checksum in another algorithm
					return nil, s3err.APIError{Code: "BadDigest", HTTPStatusCode: http.StatusBadRequest,
						Description: fmt.Sprintf("The checksum you specified for part %d did not match what we received.", pn)}
				}
				return nil, s3err.GetInvalidPartErr(id, pn, str(list[i].ETag))
			}
			switch {
			case composite != nil:
				if err := composite.Process(val); err != nil {
					return nil, err
				}
			case i == 0:
				full = val
			default:
				var err error
				if full, err = utils.AddCRCChecksum(mpAlg, full, val, p.Size); err != nil {
					return nil, err
				}
			}
		}
		if composite != nil {
			full = composite.Sum() + "-" + strconv.Itoa(len(parts))
		}
		sent := completedPartSums(types.CompletedPart{ChecksumCRC32: in.ChecksumCRC32, ChecksumCRC32C: in.ChecksumCRC32C,
			ChecksumCRC64NVME: in.ChecksumCRC64NVME, ChecksumSHA1: in.ChecksumSHA1, ChecksumSHA256: in.ChecksumSHA256}).value(mpAlg)
		if composite != nil && sent != "" && !strings.Contains(sent, "-") {
			sent += "-" + strconv.Itoa(len(parts))
		}
		if sent != "" && sent != full {
			return nil, s3err.GetChecksumBadDigestErr(mpAlg)
		}
		return map[string]string{attrChecksum: string(mpAlg) + " " + full, attrUploadChecksum: ""}, nil
	}
}
