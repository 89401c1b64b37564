package repo

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// ValidateBucket checks a bucket name against the S3 naming rules, so that
// every name the CLI accepts is one the gateway can serve.
func ValidateBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket name %q may contain only a-z, 0-9, '-' and '.'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must not contain '..'", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ErrBucketNameReserved: a name S3 keeps for itself or reads as something
// else, refused for a new bucket (ValidateNewBucket).
var ErrBucketNameReserved = errors.New("S3 does not allow it for a bucket")

// ValidateNewBucket is ValidateBucket for a bucket about to be created,
// with S3's rules for new names too: not shaped like an IP address, and
// none of the prefixes and suffixes S3 reserves. (A bucket that already
// has such a name stays usable.)
func ValidateNewBucket(b string) error {
	if err := ValidateBucket(b); err != nil {
		return err
	}
	if ip := net.ParseIP(b); ip != nil && ip.To4() != nil {
		return fmt.Errorf("bucket name %q is an IP address: %w", b, ErrBucketNameReserved)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Errorf("bucket name %q starts with %q: %w", b, p, ErrBucketNameReserved)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, sfx) {
			return fmt.Errorf("bucket name %q ends with %q: %w", b, sfx, ErrBucketNameReserved)
		}
	}
	return nil
}

// ValidateKey checks an object key: 1 to 1024 bytes of valid UTF-8 without
// NUL.
func ValidateKey(k string) error {
	if k == "" {
		return fmt.Errorf("object key is empty")
	}
	if len(k) > 1024 {
		return fmt.Errorf("object key %.40q… is longer than 1024 bytes", k)
	}
	if !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
		return fmt.Errorf("object key %q is not valid UTF-8 text", k)
	}
	return nil
}

// SplitPath splits "BUCKET/KEY" (KEY may be empty when allowEmptyKey).
func SplitPath(p string, allowEmptyKey bool) (bucket, key string, err error) {
	bucket, key, _ = strings.Cut(p, "/")
	if err := ValidateBucket(bucket); err != nil {
		return "", "", err
	}
	if key == "" && allowEmptyKey {
		return bucket, "", nil
	}
	if err := ValidateKey(key); err != nil {
		return "", "", err
	}
	return bucket, key, nil
}
