package attacks

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/format"
)

// Sizes and offsets every row uses. bigSize is four chunks in one segment
// (three full, then 3,392 bytes), so chunk-level attacks have room.
const (
	bigSize = 200000
	hdr     = format.HeaderLen
	chunkCT = format.ChunkCTSize
	chunkPT = format.ChunkSize
)

// bigCT is the segment ciphertext length of a big object.
var bigCT = int(format.SegmentCTLen(bigSize))

// row is one attack of ATTACKS.md, run on one world (one backend). Each
// row makes its own bucket, proves the positive control, runs its
// variants (each undone afterwards) and proves the store clean again.
type row struct {
	id  string
	run func(t *testing.T, w *world)
	// local, s3: the backends the row applies to (README says why not).
	local, s3 bool
}

var rows = []row{
	{"A1", a1, true, true},
	{"A2", a2, false, true},
	{"A3", a3, true, true},
	{"A5", a5, true, true},
	{"A6", a6, true, true},
	{"A7", a7, true, true},
	{"A8", a8, true, true},
	{"A9", a9, true, true},
	{"A10", a10, true, true},
	{"A11", a11, true, true},
	{"A12", a12, true, true},
	{"A13", a13, true, true},
	{"A14", a14, true, true},
	{"A15", a15, true, true},
}

// TestAttacks runs every row on the local directory store and on an S3
// bucket behind versitygw, each read through the CLI, the gateway and
// verify; A4 then sweeps everything the whole run sent to a store or
// logged.
func TestAttacks(t *testing.T) {
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			w := newWorld(t, backend, backend)
			for _, r := range rows {
				if backend == "local" && !r.local || backend == "s3" && !r.s3 {
					continue
				}
				t.Run(r.id, func(t *testing.T) { r.run(t, w) })
			}
		})
	}
	t.Run("A4", a4)
}

// variant runs one form of an attack in a subtest and undoes what it did
// to the store, whatever happens.
func variant(t *testing.T, w *world, name string, fn func(t *testing.T, tp *tamper)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		tp := w.tamper()
		defer tp.undo(t)
		fn(t, tp)
	})
}

// flip returns an edit that flips one bit at off (negative: from the end).
func flip(off int) func([]byte) []byte {
	return func(b []byte) []byte {
		if off < 0 {
			off += len(b)
		}
		b[off] ^= 0x10
		return b
	}
}

// setup puts the row's objects and proves the positive control: each reads
// byte-exact through the CLI and the gateway, and verify is clean.
func setup(t *testing.T, w *world, objs ...*obj) map[string]string {
	t.Helper()
	names := map[string]string{}
	for _, o := range objs {
		names[o.key] = w.put(t, o.bucket, o.key, o.truth)
	}
	for _, o := range objs {
		w.expectIntact(t, allReaders, *o)
	}
	w.expectVerify(t, nil)
	return names
}

// done proves every variant was undone: verify, which authenticates every
// object in full, is clean again (so the next row starts from a clean
// repository).
func done(t *testing.T, w *world) {
	t.Helper()
	w.expectVerify(t, nil)
}

func newObj(bucket, key string, n int) *obj {
	return &obj{bucket: bucket, key: key, truth: randBytes(n)}
}

// A1: the provider edits wrapped key material it can reach: an object
// header's key slot, the key journal entry of a bucket key, and a catalog
// backup (which carries wrapped keys). The keyring never reaches the
// store; its own attack (a downgrade) is in A3.
func a1(t *testing.T, w *world) {
	big, small := newObj("row-a1", "big", bigSize), newObj("row-a1", "small", 1000)
	other := newObj("row-a1-other", "x", 1000)
	n := setup(t, w, big, small, other)
	variant(t, w, "header key slot flipped", func(t *testing.T, tp *tamper) {
		tp.edit(t, n["big"], flip(12+60))
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectVerify(t, map[string]string{big.path(): "altered"})
	})
	variant(t, w, "header key slot of another object", func(t *testing.T, tp *tamper) {
		slot := w.prov.read(t, n["small"])[12:124]
		tp.edit(t, n["big"], func(b []byte) []byte { copy(b[12:124], slot); return b })
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectVerify(t, map[string]string{big.path(): "altered"})
	})
	journal, otherJournal := journalOf(t, w, "row-a1"), journalOf(t, w, "row-a1-other")
	variant(t, w, "bucket key journal entry edited", func(t *testing.T, tp *tamper) {
		tp.edit(t, journal, flip(hdr+20))
		// Reads use the catalog's record, not the journal: the data is
		// unaffected, and a later upload is still under the true key.
		w.expectIntact(t, allReaders, *big)
		later := newObj("row-a1", "later", 5000)
		w.put(t, later.bucket, later.key, later.truth)
		w.expectIntact(t, allReaders, *later)
		laterUnderTrueKey(t, w, later)
		w.expectVerify(t, map[string]string{journal: "altered"})
		w.must(t, "rm", later.path())
	})
	variant(t, w, "bucket key journal entry replaced by another bucket's", func(t *testing.T, tp *tamper) {
		tp.write(t, journal, w.prov.read(t, otherJournal))
		w.expectIntact(t, allReaders, *big)
		w.expectVerify(t, map[string]string{journal: "swapped"})
	})
	variant(t, w, "catalog backup edited", func(t *testing.T, tp *tamper) {
		backups := systemNames(t, w, 3)
		if len(backups) == 0 {
			t.Fatal("no catalog backup in the store")
		}
		tp.edit(t, backups[0], flip(hdr+30))
		w.expectIntact(t, allReaders, *big)
		w.expectVerify(t, map[string]string{backups[0]: "altered"})
	})
	done(t, w)
}

// A3: the provider rewrites an object header to another format version
// or wrap algorithm; and the keyring's Argon2id parameters are lowered
// (a keyring the provider got hold of, or a restored old copy).
func a3(t *testing.T, w *world) {
	big := newObj("row-a3", "big", bigSize)
	n := setup(t, w, big)
	variant(t, w, "format version 1 to 0", func(t *testing.T, tp *tamper) {
		tp.edit(t, n["big"], func(b []byte) []byte { b[8] = 0; return b })
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectVerify(t, map[string]string{big.path(): "altered"})
	})
	variant(t, w, "wrap algorithm 1 to 2", func(t *testing.T, tp *tamper) {
		tp.edit(t, n["big"], func(b []byte) []byte { b[9] = 2; clear(b[12+60 : 124]); return b })
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectVerify(t, map[string]string{big.path(): "altered"})
	})
	done(t, w)
	t.Run("keyring KDF downgrade", func(t *testing.T) { a3Keyring(t, w.kind) })
}

// A5: bit flips in every part of an object.
func a5(t *testing.T, w *world) {
	big := newObj("row-a5", "big", bigSize)
	n := setup(t, w, big)
	for _, c := range []struct {
		name string
		off  int
		safe int
	}{
		{"commitment", 140, 0},
		{"first chunk", hdr + 10, 0},
		{"third chunk", hdr + 2*chunkCT + 100, 2 * chunkPT},
		{"last chunk tag", hdr + bigCT - 1, 3 * chunkPT},
		{"padding", hdr + bigCT + 5, bigSize},
		{"manifest", -100, 0},
		{"footer", -1, 0},
	} {
		variant(t, w, c.name, func(t *testing.T, tp *tamper) {
			tp.edit(t, n["big"], flip(c.off))
			w.expectRefused(t, allReaders, *big, 4, c.safe)
			w.expectVerify(t, map[string]string{big.path(): "altered"})
		})
	}
	done(t, w)
}

// A6: chunks dropped, duplicated, reordered, and the object cut exactly
// at a chunk boundary — once visibly (shorter) and once with the stored
// length kept (the cut chunk's bytes moved into the padding).
func a6(t *testing.T, w *world) {
	big := newObj("row-a6", "big", bigSize)
	n := setup(t, w, big)
	chunk := func(b []byte, i int) []byte { return bytes.Clone(b[hdr+i*chunkCT : hdr+(i+1)*chunkCT]) }
	cases := []struct {
		name   string
		edit   func([]byte) []byte
		status string
		safe   int
	}{
		{"second chunk dropped", func(b []byte) []byte { return append(b[:hdr+chunkCT:hdr+chunkCT], b[hdr+2*chunkCT:]...) }, "truncated", 0},
		{"first chunk duplicated over the second", func(b []byte) []byte { copy(b[hdr+chunkCT:], chunk(b, 0)); return b }, "altered", chunkPT},
		{"second and third chunks reordered", func(b []byte) []byte {
			c1, c2 := chunk(b, 1), chunk(b, 2)
			copy(b[hdr+chunkCT:], c2)
			copy(b[hdr+2*chunkCT:], c1)
			return b
		}, "altered", chunkPT},
		{"cut at a chunk boundary", func(b []byte) []byte { return b[:hdr+2*chunkCT] }, "truncated", 0},
		{"last chunk cut, length kept", func(b []byte) []byte {
			// The final chunk's bytes become padding: header, manifest,
			// footer and the stored length are untouched, so only the
			// chunk nonces' final flag can tell.
			last := hdr + 3*chunkCT
			copy(b[last:hdr+bigCT], b[hdr+bigCT:hdr+bigCT+(hdr+bigCT-last)])
			return b
		}, "altered", 3 * chunkPT},
	}
	for _, c := range cases {
		variant(t, w, c.name, func(t *testing.T, tp *tamper) {
			tp.edit(t, n["big"], c.edit)
			w.expectRefused(t, allReaders, *big, 4, c.safe)
			w.expectVerify(t, map[string]string{big.path(): c.status})
		})
	}
	done(t, w)
}

// A7: two objects' ciphertexts swapped; an object moved over another, and
// renamed to a name of its own.
func a7(t *testing.T, w *world) {
	a, b := newObj("row-a7", "a", bigSize), newObj("row-a7", "b", bigSize)
	n := setup(t, w, a, b)
	variant(t, w, "swapped", func(t *testing.T, tp *tamper) {
		da, db := w.prov.read(t, n["a"]), w.prov.read(t, n["b"])
		tp.write(t, n["a"], db)
		tp.write(t, n["b"], da)
		w.expectRefused(t, allReaders, *a, 4, 0)
		w.expectRefused(t, allReaders, *b, 4, 0)
		w.expectVerify(t, map[string]string{a.path(): "swapped", b.path(): "swapped"})
	})
	variant(t, w, "moved over another", func(t *testing.T, tp *tamper) {
		tp.write(t, n["b"], w.prov.read(t, n["a"]))
		tp.remove(t, n["a"])
		w.expectRefused(t, allReaders, *a, 4, 0)
		w.expectRefused(t, allReaders, *b, 4, 0)
		w.expectVerify(t, map[string]string{a.path(): "missing", b.path(): "swapped"})
	})
	variant(t, w, "renamed", func(t *testing.T, tp *tamper) {
		fresh := freshName()
		tp.write(t, fresh, w.prov.read(t, n["a"]))
		tp.remove(t, n["a"])
		w.expectRefused(t, allReaders, *a, 4, 0)
		w.expectIntact(t, allReaders, *b)
		w.expectVerify(t, map[string]string{a.path(): "missing", fresh: "unknown"})
	})
	done(t, w)
}

// freshName is a valid store name Holdfast never wrote.
func freshName() string {
	return hexString(randBytes(16))
}

// A9: objects and a prefix injected that Holdfast never wrote.
func a9(t *testing.T, w *world) {
	g := newObj("row-a9", "genuine", 3000)
	setup(t, w, g)
	listed := func(t *testing.T) {
		t.Helper()
		if r := w.must(t, "ls", "row-a9"); strings.Count(strings.TrimSpace(string(r.stdout)), "\n") != 0 || !strings.Contains(string(r.stdout), "genuine") {
			t.Fatalf("ls a9 lists more than the genuine object:\n%s", r.stdout)
		}
		out, err := w.gateway(t).client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("row-a9")})
		if err != nil || len(out.Contents) != 1 || aws.ToString(out.Contents[0].Key) != "genuine" {
			t.Fatalf("gateway lists a9: %v %+v", err, out)
		}
	}
	variant(t, w, "object under a new name", func(t *testing.T, tp *tamper) {
		fresh := freshName()
		tp.write(t, fresh, randBytes(8192))
		w.expectIntact(t, allReaders, *g)
		listed(t)
		injectedKeyNotFound(t, w, "row-a9", fresh)
		w.expectVerify(t, map[string]string{fresh: "unknown"})
	})
	variant(t, w, "prefix of objects", func(t *testing.T, tp *tamper) {
		// A new fan-out prefix ("zz", never used by hex names) holding two
		// objects with valid store names.
		names := []string{"zz" + freshName()[2:], "zz" + freshName()[2:]}
		want := map[string]string{}
		for _, nm := range names {
			tp.write(t, nm, randBytes(4096))
			want[nm] = "unknown"
		}
		w.expectIntact(t, allReaders, *g)
		listed(t)
		w.expectVerify(t, want)
	})
	if sp, ok := w.prov.(*s3Provider); ok {
		t.Run("folder of foreign keys", func(t *testing.T) {
			// Keys under the repository's prefix that are not store names
			// (a "folder" with an object in it): never listed or served.
			keys := []string{s3Prefix + "evil/", s3Prefix + "evil/object"}
			sp.writeKey(t, keys[0], nil) // a folder marker is empty
			sp.writeKey(t, keys[1], []byte("injected by the provider"))
			defer func() {
				for _, k := range keys {
					sp.removeKey(t, k)
				}
			}()
			w.expectIntact(t, allReaders, *g)
			listed(t)
			injectedKeyNotFound(t, w, "row-a9", "evil/object")
			// Never served, but only the provider can have put them there:
			// verify names each key.
			w.expectVerify(t, map[string]string{"evil/": "unknown", "evil/object": "unknown"})
		})
	}
	if lp, ok := w.prov.(*localProvider); ok {
		t.Run("files of another shape", func(t *testing.T) {
			// A file and a directory in the store directory that fit no
			// name Holdfast writes.
			paths := []string{filepath.Join(lp.root, "evil.txt"), filepath.Join(lp.root, "evil-dir", "object")}
			for _, p := range paths {
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("injected by the provider"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				os.Remove(paths[0])
				os.RemoveAll(filepath.Dir(paths[1]))
			}()
			w.expectIntact(t, allReaders, *g)
			listed(t)
			injectedKeyNotFound(t, w, "row-a9", "evil.txt")
			w.expectVerify(t, map[string]string{"evil.txt": "unknown", "evil-dir/": "unknown"})
		})
	}
	done(t, w)
}

// injectedKeyNotFound: an injected name is no object of the bucket.
func injectedKeyNotFound(t *testing.T, w *world, bucket, key string) {
	t.Helper()
	if r := w.cli(t, "get", bucket+"/"+key, "-"); r.code != 3 || len(r.stdout) != 0 {
		t.Fatalf("get of the injected %s/%s: %v, %d bytes", bucket, key, r, len(r.stdout))
	}
	if b, err := w.gateway(t).get(t, bucket, key); err == nil || !strings.Contains(err.Error(), "NoSuchKey") {
		t.Fatalf("gateway GET of the injected %s/%s: %v, %d bytes", bucket, key, err, len(b))
	}
}

// A10: a valid ciphertext copied to a new name; objects built from
// fragments of two genuine ones, in place and under a new name.
func a10(t *testing.T, w *world) {
	a, b := newObj("row-a10", "a", bigSize), newObj("row-a10", "b", bigSize)
	n := setup(t, w, a, b)
	splice := func(t *testing.T) []byte {
		da, db := w.prov.read(t, n["a"]), w.prov.read(t, n["b"])
		cut := hdr + 2*chunkCT
		return append(da[:cut:cut], db[cut:]...)
	}
	variant(t, w, "copied to a new name", func(t *testing.T, tp *tamper) {
		fresh := freshName()
		tp.write(t, fresh, w.prov.read(t, n["a"]))
		w.expectIntact(t, allReaders, *a)
		injectedKeyNotFound(t, w, "row-a10", fresh)
		w.expectVerify(t, map[string]string{fresh: "unknown"})
	})
	variant(t, w, "spliced in place", func(t *testing.T, tp *tamper) {
		tp.write(t, n["a"], splice(t))
		w.expectRefused(t, allReaders, *a, 4, 0)
		w.expectIntact(t, allReaders, *b)
		w.expectVerify(t, map[string]string{a.path(): "altered"})
	})
	variant(t, w, "spliced under a new name", func(t *testing.T, tp *tamper) {
		fresh := freshName()
		tp.write(t, fresh, splice(t))
		w.expectIntact(t, allReaders, *a)
		w.expectVerify(t, map[string]string{fresh: "unknown"})
	})
	done(t, w)
}

// A11: an object deleted.
func a11(t *testing.T, w *world) {
	big, other := newObj("row-a11", "big", bigSize), newObj("row-a11", "other", 1000)
	n := setup(t, w, big, other)
	variant(t, w, "deleted", func(t *testing.T, tp *tamper) {
		tp.remove(t, n["big"])
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectIntact(t, allReaders, *other)
		w.expectVerify(t, map[string]string{big.path(): "missing"})
	})
	done(t, w)
}

// A12: an object rolled back to its older genuine version (in place, and
// put back under its old name); the catalog backup rolled back is in
// a12Backup.
func a12(t *testing.T, w *world) {
	v1 := newObj("row-a12", "doc", bigSize)
	n1 := w.put(t, v1.bucket, v1.key, v1.truth)
	old := w.prov.read(t, n1)
	v2 := newObj("row-a12", "doc", bigSize)
	n := setup(t, w, v2)
	if w.prov.exists(t, n1) {
		t.Fatalf("the replaced version %s is still stored", n1)
	}
	variant(t, w, "rolled back in place", func(t *testing.T, tp *tamper) {
		tp.write(t, n["doc"], old)
		w.expectRefused(t, allReaders, *v2, 4, 0)
		if r := w.cli(t, "cat", v2.path(), "--range", "0-99"); r.code != 4 || len(r.stdout) != 0 || !strings.Contains(string(r.stderr), "rolled back") {
			t.Fatalf("range read of the rolled-back object: %v, %d bytes", r, len(r.stdout))
		}
		w.expectVerify(t, map[string]string{v2.path(): "rolled-back"})
	})
	variant(t, w, "old version put back under its name", func(t *testing.T, tp *tamper) {
		tp.write(t, n1, old)
		w.expectIntact(t, allReaders, *v2)
		w.expectVerify(t, map[string]string{n1: "unknown"})
	})
	done(t, w)
	t.Run("catalog backup rolled back", func(t *testing.T) { a12Backup(t, w.kind) })
}

// metaView is, for A8, what the catalog and the gateway say of an
// object's metadata.
type metaView struct {
	contentType, origin string
	modified            int64 // unix seconds
	size                int64
}

func (w *world) metaOf(t *testing.T, o obj) metaView {
	t.Helper()
	st := w.stat(t, o.bucket, o.key)
	cli := metaView{contentType: st.ContentType, origin: st.Meta["origin"], modified: st.Modified.Unix(), size: st.Size}
	h, err := w.gateway(t).client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(o.key)})
	if err != nil {
		t.Fatal(err)
	}
	gw := metaView{contentType: aws.ToString(h.ContentType), origin: h.Metadata["origin"], modified: aws.ToTime(h.LastModified).Unix(), size: aws.ToInt64(h.ContentLength)}
	// The object was put without these headers or a "holdfast" entry; the
	// provider's copies of them must not surface.
	if h.CacheControl != nil || h.ContentDisposition != nil || len(h.Metadata) != 1 {
		t.Fatalf("the gateway shows headers the object was not stored with: %v %v %v",
			aws.ToString(h.CacheControl), aws.ToString(h.ContentDisposition), h.Metadata)
	}
	if cli != gw {
		t.Fatalf("the CLI says %+v, the gateway %+v", cli, gw)
	}
	return cli
}

// A8: the provider edits the metadata it keeps of an object: on S3 user
// metadata, content type, cache headers and the modification time (a copy
// onto itself); on the local store the file's times. Holdfast must not
// trust any of it: reads and listings show what was stored, encrypted.
func a8(t *testing.T, w *world) {
	m := newObj("row-a8", "photo", 70000)
	name := w.put(t, m.bucket, m.key, m.truth, "--content-type", "image/x-genuine", "--meta", "origin=genuine")
	w.expectIntact(t, allReaders, *m)
	w.expectVerify(t, nil)
	genuine := w.metaOf(t, *m)
	if genuine.contentType != "image/x-genuine" || genuine.origin != "genuine" || genuine.size != 70000 {
		t.Fatalf("control: metadata %+v", genuine)
	}
	variant(t, w, "metadata rewritten", func(t *testing.T, tp *tamper) {
		tp.save(t, name)
		forgeMetadata(t, w, name)
		w.expectIntact(t, allReaders, *m)
		if got := w.metaOf(t, *m); got != genuine {
			t.Fatalf("after the provider's edit Holdfast shows %+v, want the stored %+v", got, genuine)
		}
		w.expectVerify(t, nil)
	})
	done(t, w)
}

// hexString is lower-case hex.
func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
