package hsm

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URI names a root key in a PKCS#11 token (RFC 7512): the module to load,
// the token by its label and the key objects by their label. Root key
// version v is the secret-key object with that label and CKA_ID v as four
// big-endian bytes (docs/keys.md, "PKCS#11 objects").
//
//	pkcs11:token=holdfast;object=holdfast-root?module-path=/usr/lib/softhsm/libsofthsm2.so
//
// The URI never holds the PIN: pin-value and pin-source are refused, so
// that a PIN cannot end up in argv or in the home's files.
type URI struct {
	Token      string // token label (path attribute "token")
	Object     string // key object label (path attribute "object")
	ModulePath string // query attribute "module-path"
}

// ParseURI reads a PKCS#11 URI. It needs token, object and module-path,
// accepts type=secret-key, and refuses every other attribute (a typo must
// not silently select another token).
func ParseURI(s string) (URI, error) {
	var u URI
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return u, errors.New("a PKCS#11 URI starts with \"pkcs11:\"")
	}
	path, query, _ := strings.Cut(rest, "?")
	errPINInURI := errors.New("PKCS#11 URI: the PIN is never part of the URI; give it with HOLDFAST_PKCS11_PIN, --pin-file or at the prompt")
	set := func(part, sep string, fn func(k, v string) error) error {
		if part == "" {
			return nil
		}
		// Errors quote attribute names, never values: a PIN put in the URI
		// by mistake must not reach the terminal.
		for i, a := range strings.Split(part, sep) {
			k, raw, ok := strings.Cut(a, "=")
			if !ok {
				return fmt.Errorf("PKCS#11 URI: attribute %d is not NAME=VALUE", i+1)
			}
			if k == "pin-value" || k == "pin-source" {
				return errPINInURI
			}
			v, err := url.PathUnescape(raw)
			if err != nil {
				return fmt.Errorf("PKCS#11 URI attribute %q: its value has an invalid %%-escape", k)
			}
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
	}
	seen := map[string]bool{}
	once := func(k string) error {
		if seen[k] {
			return fmt.Errorf("PKCS#11 URI attribute %q is given twice", k)
		}
		seen[k] = true
		return nil
	}
	err := set(path, ";", func(k, v string) error {
		if err := once(k); err != nil {
			return err
		}
		switch k {
		case "token":
			u.Token = v
		case "object":
			u.Object = v
		case "type":
			if v != "secret-key" {
				return fmt.Errorf("PKCS#11 URI: type %q (a root key is a secret-key)", v)
			}
		default:
			return fmt.Errorf("PKCS#11 URI: unsupported path attribute %q (holdfast reads token, object, type)", k)
		}
		return nil
	})
	if err == nil {
		err = set(query, "&", func(k, v string) error {
			if err := once(k); err != nil {
				return err
			}
			switch k {
			case "module-path":
				u.ModulePath = v
			default:
				return fmt.Errorf("PKCS#11 URI: unsupported query attribute %q (holdfast reads module-path)", k)
			}
			return nil
		})
	}
	if err != nil {
		return URI{}, err
	}
	switch {
	case u.Token == "":
		return URI{}, errors.New("PKCS#11 URI: no token=LABEL")
	case u.Object == "":
		return URI{}, errors.New("PKCS#11 URI: no object=LABEL")
	case u.ModulePath == "":
		return URI{}, errors.New("PKCS#11 URI: no ?module-path=/path/to/module.so")
	}
	return u, nil
}

// String writes the URI back, percent-encoding what needs it.
func (u URI) String() string {
	esc := func(s string) string { return strings.ReplaceAll(url.PathEscape(s), ";", "%3B") }
	return "pkcs11:token=" + esc(u.Token) + ";object=" + esc(u.Object) + "?module-path=" + strings.ReplaceAll(url.PathEscape(u.ModulePath), "%2F", "/")
}
