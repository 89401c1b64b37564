package main

// What the provider sees (docs/what-the-provider-sees.md). The test puts
// a realistic tree through the command line, as a user would, with every
// store request recorded, then looks at the store as the provider does:
// every object name, size and byte, and every request. It checks that the
// store holds nothing but what the document says it leaks, and logs the
// numbers the document quotes (go test -v -run TestWhatTheProviderSees).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store"
)

// storeOp is one request the provider saw.
type storeOp struct {
	op        string // put, read, stat, delete, list
	name      string
	off, n    int64 // read: the range asked for; put: the size
	cmd       string
	seq       int
	stamp     time.Time
	listCount int
}

// recorder is the provider's log of requests.
type recorder struct {
	store.Store
	mu  sync.Mutex
	cmd string
	ops []storeOp
}

func (r *recorder) log(o storeOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o.cmd, o.seq, o.stamp = r.cmd, len(r.ops), time.Now()
	r.ops = append(r.ops, o)
}

func (r *recorder) Put(ctx context.Context, name string, b io.Reader, size int64) error {
	cr := &countReader{r: b}
	err := r.Store.Put(ctx, name, cr, size)
	r.log(storeOp{op: "put", name: name, n: cr.n})
	return err
}

// PutNoSync keeps the local store's batched path (store.DeferredSyncer).
func (r *recorder) PutNoSync(ctx context.Context, name string, b io.Reader, size int64) error {
	ds, ok := r.Store.(store.DeferredSyncer)
	if !ok {
		return r.Put(ctx, name, b, size)
	}
	cr := &countReader{r: b}
	err := ds.PutNoSync(ctx, name, cr, size)
	r.log(storeOp{op: "put", name: name, n: cr.n})
	return err
}

func (r *recorder) Sync(ctx context.Context) error {
	if ds, ok := r.Store.(store.DeferredSyncer); ok {
		return ds.Sync(ctx)
	}
	return nil
}

func (r *recorder) ReadRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	r.log(storeOp{op: "read", name: name, off: off, n: n})
	return r.Store.ReadRange(ctx, name, off, n)
}

func (r *recorder) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	r.log(storeOp{op: "stat", name: name})
	return r.Store.Stat(ctx, name)
}

func (r *recorder) Delete(ctx context.Context, name string) error {
	r.log(storeOp{op: "delete", name: name})
	return r.Store.Delete(ctx, name)
}

func (r *recorder) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	r.log(storeOp{op: "list", name: prefix})
	return r.Store.List(ctx, prefix, fn)
}

// during returns the requests made by command cmd.
func (r *recorder) during(cmd string) []storeOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []storeOp
	for _, o := range r.ops {
		if o.cmd == cmd {
			out = append(out, o)
		}
	}
	return out
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// treeFile is one file of the generated tree.
type treeFile struct {
	rel  string
	size int
	sum  [32]byte
}

// The tree's words: every path component is at least 10 bytes, so that a
// match in 50 MB of ciphertext is no accident.
var (
	dirWords  = []string{"accounting", "customers", "engineering", "family-photos", "medical-records", "legal-contracts", "tax-returns", "projects-2026", "invoices-archive", "correspondence"}
	fileWords = []string{"quarterly-report", "passport-scan", "salary-review", "diagnosis-letter", "board-minutes", "holiday-video", "source-archive", "lease-agreement", "bank-statement", "design-notes"}
	fileExts  = []string{".pdf", ".jpg", ".docx", ".txt", ".tar.gz", ".xlsx"}
)

// clientTime is every file's modification time: a date nothing else has.
var clientTime = time.Date(1987, 6, 5, 4, 3, 2, 123456789, time.UTC)

// makeTree writes nfiles files in nested directories: sizes mostly small,
// some medium, a few large; some files identical to others (same and
// other names); a few empty; some with a plaintext canary inside.
func makeTree(t *testing.T, root string, nfiles int) ([]treeFile, []string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(6, 2026))
	var files []treeFile
	needles := map[string]bool{}
	var dirs []string
	for i := 0; len(dirs) < 120; i++ {
		d := fmt.Sprintf("%s-%03d", dirWords[i%len(dirWords)], i)
		if i >= len(dirWords) && rng.IntN(2) == 0 {
			d = filepath.Join(dirs[rng.IntN(len(dirs))], d) // nested, up to several levels
		}
		dirs = append(dirs, d)
		for _, c := range strings.Split(d, string(filepath.Separator)) {
			needles[c] = true
		}
	}
	var contents [][]byte
	for i := range nfiles {
		name := fmt.Sprintf("%s-%04d%s", fileWords[rng.IntN(len(fileWords))], i, fileExts[rng.IntN(len(fileExts))])
		rel := filepath.Join(dirs[rng.IntN(len(dirs))], name)
		var b []byte
		switch {
		case i%60 == 7 && len(contents) > 0: // identical to an earlier file
			b = contents[rng.IntN(len(contents))]
		case i%400 == 3:
			b = nil
		default:
			var n int
			switch {
			case i%100 == 0:
				n = 256<<10 + rng.IntN(768<<10)
			case i%5 == 0:
				n = 8<<10 + rng.IntN(120<<10)
			default:
				n = rng.IntN(8 << 10)
			}
			b = make([]byte, n)
			rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), 7}).Read(b)
			if i%25 == 1 && n > 64 {
				canary := fmt.Sprintf("PLAINTEXT-CANARY-%04d", i)
				copy(b[n/2:], canary)
				needles[canary] = true
			}
		}
		contents = append(contents, b)
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, clientTime, clientTime); err != nil {
			t.Fatal(err)
		}
		files = append(files, treeFile{rel: rel, size: len(b), sum: sha256.Sum256(b)})
		needles[name] = true
		needles[strings.TrimSuffix(name, filepath.Ext(name))] = true
	}
	var ns []string
	for n := range needles {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return files, ns
}

// timeNeedles are encodings of clientTime a leak could take.
func timeNeedles() [][]byte {
	s, ns := clientTime.Unix(), clientTime.UnixNano()
	out := [][]byte{
		[]byte(strconv.FormatInt(s, 10)), []byte(strconv.FormatInt(ns, 10)),
		[]byte(clientTime.Format(time.RFC3339)[:10]), []byte(clientTime.Format(time.RFC3339Nano)),
		[]byte(clientTime.Format(http1123)),
	}
	for _, v := range []int64{s, ns, clientTime.UnixMilli(), clientTime.UnixMicro()} {
		out = append(out, binary.BigEndian.AppendUint64(nil, uint64(v)), binary.LittleEndian.AppendUint64(nil, uint64(v)))
	}
	return out
}

const http1123 = "Mon, 02 Jan 2006"

// finder finds any of many needles (each at least 8 bytes) in a buffer,
// by their first 8 bytes.
type finder map[uint64][][]byte

func newFinder(needles [][]byte) finder {
	f := finder{}
	for _, n := range needles {
		if len(n) < 8 {
			panic(fmt.Sprintf("needle %q shorter than 8 bytes", n))
		}
		k := binary.LittleEndian.Uint64(n)
		f[k] = append(f[k], n)
	}
	return f
}

// find returns the needles found in b.
func (f finder) find(b []byte) []string {
	var hits []string
	for i := 0; i+8 <= len(b); i++ {
		for _, n := range f[binary.LittleEndian.Uint64(b[i:])] {
			if bytes.HasPrefix(b[i:], n) {
				hits = append(hits, string(n))
			}
		}
	}
	return hits
}

var storeNameRE = regexp.MustCompile(`^([0-9a-f]{32}|holdfast-repo-[0-9a-f]{32})$`)

// TestWhatTheProviderSees: see the top of the file.
func TestWhatTheProviderSees(t *testing.T) {
	const nfiles = 2000
	c := newCLI(t)
	rec := &recorder{}
	c.hooks = &repo.Hooks{WrapStore: func(s store.Store) store.Store { rec.Store = s; return rec }}
	tree := filepath.Join(t.TempDir(), "tree")
	files, names := makeTree(t, tree, nfiles)
	const bucket = "confidential-bucket-name"
	names = append(names, bucket)

	run := func(cmd string, args ...string) string {
		rec.mu.Lock()
		rec.cmd = cmd
		rec.mu.Unlock()
		return c.must(args...)
	}
	run("init", "init")
	start := time.Now()
	run("sync", "sync", tree, bucket+"/home-directory")
	syncTook := time.Since(start)

	// ---- At rest: the store, as the provider reads it. ----
	storeDir := filepath.Join(c.home, "store")
	type object struct {
		name string
		size int64
		body []byte
	}
	var objs []object
	err := filepath.WalkDir(storeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Year() == clientTime.Year() {
			t.Errorf("%s carries the client's time %s", p, info.ModTime())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		// The local store's own fan-out directory is the name's first two
		// characters: no structure of the tree.
		rel, _ := filepath.Rel(storeDir, p)
		if dir, base := filepath.Split(rel); dir != "" && dir != base[:2]+"/" && dir != "holdfast-repo-"[:2]+"/" {
			t.Errorf("store path %s: a directory that is not the name's fan-out", rel)
		}
		objs = append(objs, object{name: filepath.Base(p), size: info.Size(), body: b})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Names: flat and opaque.
	for _, o := range objs {
		if !storeNameRE.MatchString(o.name) {
			t.Errorf("store name %q is not opaque", o.name)
		}
	}
	// No names, no path components, no canaries, no client time, in any
	// byte or any store path.
	needles := make([][]byte, 0, len(names)+20)
	for _, n := range names {
		needles = append(needles, []byte(n))
	}
	needles = append(needles, timeNeedles()...)
	f := newFinder(needles)
	// Control: the finder finds every needle in a plaintext buffer that
	// holds them (in the middle of random bytes).
	var control bytes.Buffer
	for i, n := range needles {
		control.Write(bytes.Repeat([]byte{byte(i)}, 13))
		control.Write(n)
	}
	if got := f.find(control.Bytes()); len(got) < len(needles) {
		t.Fatalf("control: the finder found %d of %d needles", len(got), len(needles))
	}
	var storedBytes int64
	for _, o := range objs {
		storedBytes += o.size
		if hits := f.find(append([]byte(o.name+"\x00"), o.body...)); len(hits) > 0 {
			t.Errorf("object %s holds %q", o.name, hits)
		}
	}

	// Sizes: every stored size is a padding class (a fixed point of the
	// padding rule, at least 4096), and so is not the file's size. Control:
	// most files' own sizes are not classes, so the check can fail.
	isClass := func(n int64) bool { return n >= 4096 && int64(format.Padme(uint64(n))) == n }
	for _, o := range objs {
		if !isClass(o.size) {
			t.Errorf("object %s: size %d is not a padding class", o.name, o.size)
		}
	}
	plainSizes, notClass := map[int]bool{}, 0
	for _, tf := range files {
		plainSizes[tf.size] = true
		if !isClass(int64(tf.size)) {
			notClass++
		}
	}
	if notClass < len(files)*9/10 {
		t.Fatalf("control: only %d of %d file sizes are not classes", notClass, len(files))
	}
	classes := map[int64]int{}
	for _, o := range objs {
		classes[o.size]++
	}

	// Equal files, unequal ciphertext: no two objects are equal, and the
	// objects of identical files share no 16-byte block after the header.
	seen := map[[32]byte]string{}
	for _, o := range objs {
		h := sha256.Sum256(o.body)
		if prev, ok := seen[h]; ok {
			t.Errorf("objects %s and %s are identical", prev, o.name)
		}
		seen[h] = o.name
	}
	byName := map[string][]byte{}
	for _, o := range objs {
		byName[o.name] = o.body
	}
	ls := lsObjects(t, c, bucket)
	bySum := map[[32]byte][]string{}
	for _, tf := range files {
		bySum[tf.sum] = append(bySum[tf.sum], ls["home-directory/"+filepath.ToSlash(tf.rel)])
	}
	identicalPairs := 0
	for _, objNames := range bySum {
		for i := 1; i < len(objNames); i++ {
			a, b := byName[objNames[0]], byName[objNames[i]]
			if a == nil || b == nil {
				t.Fatalf("stored object of an identical file not found")
			}
			identicalPairs++
			for off := format.HeaderLen; off+16 <= min(len(a), len(b)); off += 16 {
				if bytes.Equal(a[off:off+16], b[off:off+16]) {
					t.Errorf("identical files: %s and %s share the block at %d", objNames[0], objNames[i], off)
					break
				}
			}
		}
	}
	if identicalPairs < 20 {
		t.Fatalf("control: the tree has only %d pairs of identical files", identicalPairs)
	}
	// Control for the client time: it is on premises (the catalog has it).
	if out := c.must("--json", "stat", bucket+"/home-directory/"+filepath.ToSlash(files[1].rel)); !strings.Contains(out, "1987-06-05T04:03:02.123456789Z") {
		t.Fatalf("control: the catalog does not record the client time:\n%s", out)
	}

	// ---- In motion: the requests, as the provider logs them. ----
	syncOps := rec.during("sync")
	puts, fileObjs := 0, 0
	for _, o := range syncOps {
		if o.op == "put" {
			puts++
			if _, ok := lsByObject(ls)[o.name]; ok {
				fileObjs++
			}
		}
	}
	if fileObjs != nfiles {
		t.Errorf("sync put %d objects of files, want %d", fileObjs, nfiles)
	}

	// Overwrite 20 files and delete 10, then sync again.
	for i := 0; i < 20; i++ {
		p := filepath.Join(tree, files[10+i].rel)
		if err := os.WriteFile(p, []byte(fmt.Sprintf("new content %d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		if err := os.Remove(filepath.Join(tree, files[100+i].rel)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	run("resync", "sync", "--delete", tree, bucket+"/home-directory")
	var rPuts, rDeletes int
	for _, o := range rec.during("resync") {
		switch o.op {
		case "put":
			rPuts++
		case "delete":
			rDeletes++
		}
	}

	// Reads: a whole large file, and a small range of it.
	var big treeFile
	for _, tf := range files[200:] {
		if tf.size > 512<<10 {
			big = tf
			break
		}
	}
	key := bucket + "/home-directory/" + filepath.ToSlash(big.rel)
	run("get", "get", key, filepath.Join(t.TempDir(), "out"))
	run("range", "cat", key, "--range", "300000-300099")
	run("verify", "--quiet", "verify", "--quick")
	ranges := func(cmd string) string {
		var s []string
		for _, o := range rec.during(cmd) {
			if o.op == "read" {
				s = append(s, fmt.Sprintf("[%d,+%d)", o.off, o.n))
			}
		}
		return strings.Join(s, " ")
	}
	var vReads, vStats int
	for _, o := range rec.during("verify") {
		switch o.op {
		case "read":
			vReads++
		case "stat":
			vStats++
		}
	}

	// The numbers the document quotes.
	t.Logf("tree: %d files in %d directories, %d distinct sizes, %d pairs of identical files, %.1f MiB of plaintext",
		len(files), 120, len(plainSizes), identicalPairs, float64(sumSizes(files))/(1<<20))
	t.Logf("store: %d objects (%d files + %d system objects), %.1f MiB stored, %d size classes",
		len(objs), nfiles, len(objs)-nfiles, float64(storedBytes)/(1<<20), len(classes))
	t.Logf("classes: %s", classTable(classes))
	t.Logf("sync of the tree: %s; %d puts (%d of files), %d requests in all", syncTook.Round(time.Millisecond), puts, fileObjs, len(syncOps))
	t.Logf("resync after overwriting 20 files and deleting 10: %d puts, %d deletes", rPuts, rDeletes)
	t.Logf("get of a %d-byte file (stored %d): reads %s", big.size, storedSize(ls, key, byName, bucket), ranges("get"))
	t.Logf("cat --range 300000-300099 of it: reads %s", ranges("range"))
	t.Logf("verify --quick: %d reads, %d stats for %d objects", vReads, vStats, len(objs))
	files2obj := lsByObject(ls)
	for o, k := range lsByObject(lsObjects(t, c, bucket)) { // the new versions too
		files2obj[o] = k
	}
	for _, cmd := range []string{"init", "sync", "resync"} {
		t.Logf("%s: requests in order: %s; puts of objects that are not files: %s", cmd, runs(rec.during(cmd)), systemPuts(rec.during(cmd), files2obj))
	}
}

// runs compresses a request log to runs of one kind: "put×20 delete×30".
func runs(ops []storeOp) string {
	var b []string
	for i := 0; i < len(ops); {
		j := i
		for j < len(ops) && ops[j].op == ops[i].op {
			j++
		}
		b = append(b, fmt.Sprintf("%s×%d", ops[i].op, j-i))
		i = j
	}
	return strings.Join(b, " ")
}

// systemPuts lists the sizes of the objects put that hold no file
// (marker, key journal records, catalog backups).
func systemPuts(ops []storeOp, fileObjs map[string]string) string {
	var b []string
	for _, o := range ops {
		if _, ok := fileObjs[o.name]; o.op == "put" && !ok {
			b = append(b, fmt.Sprintf("#%d:%d bytes", o.seq, o.n))
		}
	}
	return strings.Join(b, ", ")
}

func sumSizes(fs []treeFile) int64 {
	var n int64
	for _, f := range fs {
		n += int64(f.size)
	}
	return n
}

func classTable(classes map[int64]int) string {
	var sizes []int64
	for s := range classes {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	var b strings.Builder
	for _, s := range sizes {
		fmt.Fprintf(&b, "%d×%d ", s, classes[s])
	}
	return b.String()
}

// lsObjects maps each key under bucket to its store name.
func lsObjects(t *testing.T, c *cli, bucket string) map[string]string {
	t.Helper()
	out := c.must("--json", "ls", bucket)
	m := map[string]string{}
	for _, line := range regexp.MustCompile(`"key": "([^"]+)"[^}]*?"object": "([0-9a-f]{32})"`).FindAllStringSubmatch(out, -1) {
		m[line[1]] = line[2]
	}
	if len(m) == 0 {
		t.Fatalf("ls --json: no objects in\n%.500s", out)
	}
	return m
}

func lsByObject(ls map[string]string) map[string]string {
	m := map[string]string{}
	for k, o := range ls {
		m[o] = k
	}
	return m
}

func storedSize(ls map[string]string, key string, byName map[string][]byte, bucket string) int {
	return len(byName[ls[strings.TrimPrefix(key, bucket+"/")]])
}
