package gateway

import (
	"bytes"
	"context"
	"encoding/xml"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/gofiber/fiber/v3"
	"github.com/versity/versitygw/s3err"
)

// Request options the front end does not hand to the backend: the
// encoding-type of a listing and the Quiet of a DeleteObjects (its
// controllers read neither). keepOptions, a middleware that runs before
// the front end authenticates a request, sets them up; the backend finds
// them in its context.

type (
	encodingTypeKey struct{}
	deleteBodyKey   struct{}
)

// keepOptions keeps a request's encoding-type parameter (the first, if it
// is sent more than once; an empty value is taken as none), and gives a
// DeleteObjects request's handler a way to its body. The body is not read
// here, before the request is authenticated: the front end reads it (and
// checks it against its Content-MD5 or checksum) before it calls the
// backend, which reads it again from memory.
func keepOptions(c fiber.Ctx) error {
	args := c.Request().URI().QueryArgs()
	if v := args.Peek("encoding-type"); len(v) > 0 {
		c.Locals(encodingTypeKey{}, string(v)) // a copy: v is the front end's buffer
	}
	if c.Request().Header.IsPost() && args.Has("delete") {
		c.Locals(deleteBodyKey{}, func() []byte { return c.BodyRaw() })
	}
	return c.Next()
}

// deleteQuiet reports whether a DeleteObjects request asks for quiet mode
// (<Quiet>true</Quiet> in its body): S3 then answers only the keys it
// failed to delete. A Quiet that is not a boolean is MalformedXML.
func deleteQuiet(ctx context.Context) (bool, error) {
	body, _ := ctx.Value(deleteBodyKey{}).(func() []byte)
	if body == nil {
		return false, nil
	}
	var d struct{ Quiet *string }
	if err := xml.Unmarshal(body(), &d); err != nil || d.Quiet == nil {
		// The front end parsed the body it handed over; one this cannot
		// read (a framing it removed) is answered in full, as without
		// Quiet, never refused.
		return false, nil
	}
	switch strings.TrimSpace(*d.Quiet) {
	case "true", "1":
		return true, nil
	case "false", "0", "":
		return false, nil
	}
	return false, s3err.GetAPIError(s3err.ErrMalformedXML)
}

// listEncoding is how a listing writes names (keys, prefixes, the
// delimiter and markers): as they are, or, when the request has
// encoding-type=url, URL-encoded as S3 does (urlEncodeName), with the
// EncodingType the response must then carry. Any other encoding-type is
// refused as S3 refuses it.
func listEncoding(ctx context.Context) (enc func(string) string, typ types.EncodingType, err error) {
	switch v, _ := ctx.Value(encodingTypeKey{}).(string); v {
	case "":
		return func(s string) string { return s }, "", nil
	case string(types.EncodingTypeUrl):
		return urlEncodeName, types.EncodingTypeUrl, nil
	default:
		return nil, "", s3err.InvalidArgumentError{Description: "Invalid Encoding Method specified in Request",
			ArgumentName: "encoding-type", ArgumentValue: v}
	}
}

// urlEncodeName encodes a name as S3 does under encoding-type=url: each
// byte of its UTF-8 percent-encoded in upper-case hex, except letters,
// digits and "-_.*/", which stay as they are, and the space, which becomes
// "+". The clients decode the form way (botocore with unquote_plus,
// minio-go and rclone with url.QueryUnescape), so a "+" in a name must be
// sent as "%2B" and a "%" as "%25"; "/" is left alone, as S3 leaves it
// ("a b/c+d" is listed as "a+b/c%2Bd"). Characters XML 1.0 cannot carry,
// such as the control characters, reach the client only this way.
func urlEncodeName(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '*', c == '/':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// sameHost refuses a request whose request-target is in absolute form
// naming another host than its Host header. With a virtual domain the
// front end takes the bucket from the request URI's host, while SigV4
// covers the Host header: a presigned URL for BUCKET.DOMAIN sent as
// "GET https://OTHER.DOMAIN/key" with its signed Host would otherwise
// read or write OTHER with the signer's rights.
func sameHost(c fiber.Ctx) error {
	if !bytes.EqualFold(c.Request().URI().Host(), c.Request().Header.Host()) {
		e := s3err.GetAPIError(s3err.ErrInvalidRequest)
		c.Status(e.HTTPStatusCode)
		c.Set("Content-Type", "application/xml")
		return c.Send(e.XMLBody("", ""))
	}
	return c.Next()
}
