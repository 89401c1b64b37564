package attacks

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// a4 sweeps everything the whole suite sent to a store or wrote to a log
// for every secret it knows: each world's passphrase, root keys, bucket
// keys and the data key of every object its store holds, the S3 store's
// secret and the gateway's access-key secrets. The corpus is every stored
// file of every local store, every file and extended attribute in
// versitygw's backing directory, every request (line, headers, body)
// Holdfast sent through the recording proxy, every CLI standard error
// and the gateways' and versitygw's output. Each secret is looked for raw,
// in hex and in base64. The control plants one key in a copy of the
// corpus and must find it.
func a4(t *testing.T) {
	worldsMu.Lock()
	ws := append([]*world(nil), worlds...)
	worldsMu.Unlock()
	for _, w := range ws {
		if n := w.harvest(t); n == 0 {
			t.Fatalf("%s: no data key found: the sweep would look for nothing", w.name)
		}
	}
	corpus := map[string][]byte{"logs (CLI stderr, gateways)": logs.bytes()}
	for _, w := range ws {
		if p, ok := w.prov.(*localProvider); ok {
			corpus["local store "+w.name] = readTree(t, p.root, false)
		}
	}
	if e := s3Shared; e != nil {
		// The provider's own configuration (its TLS key, the secret it was
		// started with) is not Holdfast's doing: the sweep covers what
		// versitygw stores for its clients, and its log.
		posix, _ := filepath.Glob(filepath.Join(e.dataDir, "versitygw-*", "posix"))
		slog, _ := filepath.Glob(filepath.Join(e.dataDir, "versitygw-*", "server.log"))
		if len(posix) != 1 || len(slog) != 1 {
			t.Fatalf("versitygw's backing directory not found under %s", e.dataDir)
		}
		corpus["versitygw backing directory"] = readTree(t, posix[0], true)
		sl, err := os.ReadFile(slog[0])
		if err != nil {
			t.Fatal(err)
		}
		corpus["versitygw log"] = sl
		corpus["requests sent to the S3 store"] = e.rec.bytes()
	}
	secretsMu.Lock()
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	secretsMu.Unlock()
	total := 0
	for _, c := range corpus {
		total += len(c)
	}
	t.Logf("A4: %d secrets swept over %d bytes in %d places", len(names), total, len(corpus))
	if len(corpus["requests sent to the S3 store"]) == 0 || total < 1<<20 {
		t.Fatalf("the corpus is too small to mean anything: %d bytes", total)
	}
	for _, n := range names {
		secretsMu.Lock()
		v := secrets[n]
		secretsMu.Unlock()
		for where, c := range corpus {
			if form, hit := contains(c, v); hit {
				t.Errorf("%s found (%s) in %s", n, form, where)
			}
		}
	}
	// Control: a key planted in a copy of the corpus, in each encoding,
	// is found.
	planted := randBytes(32)
	for _, enc := range []func([]byte) []byte{
		func(b []byte) []byte { return b },
		func(b []byte) []byte { return []byte(hex.EncodeToString(b)) },
		func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) },
	} {
		c := append(bytes.Clone(corpus["logs (CLI stderr, gateways)"]), enc(planted)...)
		if _, hit := contains(c, planted); !hit {
			t.Fatal("control: a planted key was not found")
		}
	}
}

// contains looks for v raw, as hex (either case) and as base64 (standard
// and URL alphabets, padded or not).
func contains(c, v []byte) (string, bool) {
	forms := map[string][]byte{
		"raw":        v,
		"hex":        []byte(hex.EncodeToString(v)),
		"HEX":        bytes.ToUpper([]byte(hex.EncodeToString(v))),
		"base64":     []byte(base64.RawStdEncoding.EncodeToString(v)),
		"base64url":  []byte(base64.RawURLEncoding.EncodeToString(v)),
		"base64 pad": []byte(base64.StdEncoding.EncodeToString(v)),
	}
	for name, f := range forms {
		if len(f) >= 8 && bytes.Contains(c, f) {
			return name, true
		}
	}
	return "", false
}

// readTree concatenates every regular file under root, and with xattrs
// their extended attributes (versitygw keeps object metadata there).
func readTree(t *testing.T, root string, xattrs bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if xattrs {
			buf.Write(readXattrs(p))
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			buf.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readXattrs(p string) []byte {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz <= 0 {
		return nil
	}
	list := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, list); err != nil {
		return nil
	}
	var out []byte
	for _, name := range bytes.Split(list[:sz], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		out = append(out, name...)
		if n, err := unix.Lgetxattr(p, string(name), nil); err == nil && n > 0 {
			v := make([]byte, n)
			if n, err = unix.Lgetxattr(p, string(name), v); err == nil {
				out = append(out, v[:n]...)
			}
		}
	}
	return out
}
