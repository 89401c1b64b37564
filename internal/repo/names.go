package repo

import (
	"fmt"
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
