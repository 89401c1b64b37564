package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/secret"
)

// ErrDamaged: the log, its sealed record or its off-box checkpoints were
// changed: a *Damage says where.
var ErrDamaged = errors.New("the audit log was tampered with")

// Bounds on what an off-box copy can make verify do: whoever can write
// the copy must not make it run for hours or fill memory.
const (
	// maxAhead bounds the ratchet steps (one HKDF each) verify takes past
	// the log's end, in all, to check off-box checkpoints' MACs there.
	maxAhead = 1 << 20
	// maxBeyond bounds the off-box lines past the log's end (and the
	// lines that conflict with the log's) whose MACs are checked.
	maxBeyond = 1024
	// maxOffBoxLines bounds the lines of the off-box copy (about 48 bytes
	// of memory each): 4,194,304 checkpoints, 400 million entries at the
	// default checkpoint interval.
	maxOffBoxLines = 1 << 22
	// maxRecordLines: only the newest record lines of the off-box copy
	// are kept (each one tried costs an unwrap).
	maxRecordLines = 8
)

// BadEntry names the first line of the log that fails.
type BadEntry struct {
	Line   int    // from 1
	Seq    uint64 // the seq the line should have had (Line-1)
	Reason string
}

// CheckpointProblem names an off-box checkpoint (or one in the store)
// the log does not reach (it was cut or rewritten at or before it) or
// that is itself forged.
type CheckpointProblem struct {
	File   string
	Line   int // in File, from 1 (0: the file is missing or empty)
	Seq    uint64
	Reason string
	// Store is the store object holding the checkpoint, for one in the
	// store (File and Line are then empty).
	Store string `json:",omitempty"`
}

// where names the checkpoint's copy.
func (c *CheckpointProblem) where() string {
	if c.Store != "" {
		return "in the store, object " + c.Store
	}
	return fmt.Sprintf("%s line %d", c.File, c.Line)
}

// Damage is what Verify found wrong: the first bad entry, the newest
// off-box checkpoint the intact log does not reach, and what is wrong
// with the sealed record or the files (Problems), any of them.
type Damage struct {
	Log        string
	BadEntry   *BadEntry
	Checkpoint *CheckpointProblem
	Problems   []string
}

func (d *Damage) Error() string {
	parts := append([]string{}, d.Problems...)
	if b := d.BadEntry; b != nil {
		parts = append(parts, fmt.Sprintf("audit log %q: the first bad entry is line %d (seq %d): %s", d.Log, b.Line, b.Seq, b.Reason))
	}
	if c := d.Checkpoint; c != nil {
		parts = append(parts, fmt.Sprintf("the log does not reach checkpoint seq %d (%s): %s", c.Seq, c.where(), c.Reason))
	}
	return strings.Join(parts, "; ")
}

// Unwrap makes a Damage an ErrDamaged.
func (d *Damage) Unwrap() error { return ErrDamaged }

func (d *Damage) any() bool { return d.BadEntry != nil || d.Checkpoint != nil || len(d.Problems) > 0 }

// Report is what Verify checked.
type Report struct {
	Log          string
	Entries      int    // intact lines, from the first
	LastSeq      uint64 // the last intact line's seq
	Head         string // SHA-256 of the last intact line
	Checkpoints  string // the off-box copy
	OffBox       int    // off-box checkpoint lines read
	NewestOffBox uint64 // the newest of them the log holds
	// Store checkpoints (VerifyOptions.Store): how many were read, and
	// the newest of them the log holds (StoreChecked: they were read).
	StoreCheckpoints int
	NewestStore      uint64
	StoreChecked     bool
	// Copies are the further checkpoint copies (VerifyOptions.Copies),
	// in the order given.
	Copies   []CopyReport
	Record   string // the copy of the sealed record K_0 was opened from (VerifyKeys)
	Resealed uint32 // the root key version K_0 was sealed again under (VerifyKeys), or 0
	Warnings []string
}

// Verify checks the log in dir under k0 (from Unseal) and its off-box
// checkpoints in cpPath: every line must be in its one encoding, carry
// seq = its line number - 1, name the hash of the line before and carry
// the MAC of K_seq; every off-box checkpoint must be, byte for byte, the
// log's line at its seq, or be another log's line from before this
// log's genesis in the copy (a warning). It returns a *Damage (an
// ErrDamaged) naming the first bad entry and the newest off-box
// checkpoint the intact log does not reach.
func Verify(dir, cpPath string, k0 secret.Key) (Report, error) {
	return VerifyWith(dir, cpPath, k0, VerifyOptions{})
}

// StoredCheckpoint is a copy of a checkpoint line the repository's store
// holds (repo.(*Repo).AuditCheckpoints).
type StoredCheckpoint struct {
	Name string // the store object
	Line []byte // the line (nil when Err is set)
	// Err: the object is missing, altered, swapped or not this
	// repository's. It is damage: the copy cannot vouch for the log.
	Err error
}

// VerifyOptions add the store's checkpoints, and further copies, to
// Verify.
type VerifyOptions struct {
	// Store are the checkpoints in the repository's store; StoreRead
	// says they were read (an empty Store then means it holds none).
	Store     []StoredCheckpoint
	StoreRead bool
	// Copies are further files of checkpoint lines: a key server's
	// clients keep the checkpoints it hands them (docs/keyserver.md).
	// A copy may hold any of the log's checkpoints, not the genesis
	// one; each line it holds is judged as a store checkpoint is (the
	// log's line at its seq byte for byte; a log that ends before one
	// carrying its MAC was cut, and the Damage names it "in FILE").
	Copies []string
}

// CopyReport is what Verify read of one further copy.
type CopyReport struct {
	File        string
	Checkpoints int    // checkpoint lines read
	Newest      uint64 // the newest of them the log holds
}

// maxCopyLines bounds the lines of a further copy Verify reads (each is
// kept, parsed, while the log is walked). A client keeps far fewer
// (remote.MaxCheckpointCopy).
const maxCopyLines = 1 << 16

// VerifyWith is Verify that also checks the store's checkpoints: each
// must be the log's line at its seq, byte for byte, as an off-box one
// must. A log that ends before one carrying its MAC was cut (the Damage
// names it, "in the store"); one that cannot be read is damage too.
func VerifyWith(dir, cpPath string, k0 secret.Key, o VerifyOptions) (Report, error) {
	rep := Report{Log: filepath.Join(dir, LogName), Checkpoints: cpPath, StoreChecked: o.StoreRead}
	dmg := &Damage{Log: rep.Log}
	idx, bad, cpErr := readCheckpoints(cpPath)
	if cpErr != nil && !errors.Is(cpErr, fs.ErrNotExist) {
		return rep, cpErr
	}
	f, err := os.Open(rep.Log)
	if errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("%q: %w", rep.Log, ErrNoLog)
	}
	if err != nil {
		return rep, err
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_SH); err != nil {
		return rep, err
	}
	var key []byte
	if err := k0.Use(func(b []byte) error { key = bytes.Clone(b); return nil }); err != nil {
		return rep, err
	}
	defer func() { clear(key) }()
	// The keys of the seqs where an off-box line is not the log's line,
	// to tell the log's own (rewritten) checkpoints from others'.
	conflictKeys := map[uint64][]byte{}
	defer func() {
		for _, k := range conflictKeys {
			clear(k)
		}
	}()
	genesisLine := 0 // the off-box copy's line holding this log's genesis
	newestInLog, haveInLog := uint64(0), false
	sidx, sbad := storeIndex(o.Store)
	copyNewest := map[string]uint64{}
	for _, path := range o.Copies {
		cidx, cbad, err := copyIndex(path)
		if err != nil {
			dmg.Problems = append(dmg.Problems, fmt.Sprintf("the checkpoint copy %s cannot be read: %v", path, err))
		}
		sidx, sbad = append(sidx, cidx...), append(sbad, cbad...)
		rep.Copies = append(rep.Copies, CopyReport{File: path, Checkpoints: len(cidx) + len(cbad)})
	}
	sort.SliceStable(sidx, func(i, j int) bool { return sidx[i].seq < sidx[j].seq })
	sp := 0
	var genesisTime time.Time
	br := bufio.NewReaderSize(f, maxLine)
	prev, seq, p := "", uint64(0), 0
	for n := 1; ; n, seq = n+1, seq+1 {
		line, err := br.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 {
			break
		}
		why := ""
		var e Entry
		switch {
		case err == io.EOF:
			why = "the last line is not a whole entry (a write was interrupted, or the file was cut, or bytes were appended)"
		case errors.Is(err, bufio.ErrBufferFull):
			why = fmt.Sprintf("longer than %d bytes: not an entry", maxLine)
		case err != nil:
			return rep, fmt.Errorf("reading %q: %w", rep.Log, err)
		default:
			line = line[:len(line)-1]
			why = checkLine(line, seq, prev, key, &e)
		}
		if why != "" {
			dmg.BadEntry = &BadEntry{Line: n, Seq: seq, Reason: why}
			break
		}
		sum := sha256.Sum256(line)
		for ; p < len(idx) && idx[p].seq < seq; p++ {
		}
		for q := p; q < len(idx) && idx[q].seq == seq; q++ {
			switch {
			case idx[q].hash == sum:
				idx[q].met = true
				if seq == 0 {
					genesisLine = max(genesisLine, idx[q].fileLine)
				}
				rep.NewestOffBox = max(rep.NewestOffBox, seq)
			case conflictKeys[seq] == nil && len(conflictKeys) < maxBeyond:
				conflictKeys[seq] = bytes.Clone(key)
			}
		}
		for ; sp < len(sidx) && sidx[sp].seq < seq; sp++ {
		}
		for q := sp; q < len(sidx) && sidx[q].seq == seq; q++ {
			switch {
			case sidx[q].hash == sum:
				sidx[q].met = true
				if sidx[q].file == "" {
					rep.NewestStore = max(rep.NewestStore, seq)
				} else {
					copyNewest[sidx[q].file] = max(copyNewest[sidx[q].file], seq)
				}
			case conflictKeys[seq] == nil && len(conflictKeys) < maxBeyond:
				conflictKeys[seq] = bytes.Clone(key)
			}
		}
		if seq == 0 {
			genesisTime = e.Time
		}
		if e.Kind == KindCheckpoint {
			newestInLog, haveInLog = seq, true
		}
		prev = hex.EncodeToString(sum[:])
		rep.Entries, rep.LastSeq, rep.Head = n, seq, prev
		next := ratchet(key)
		clear(key)
		key = next
	}
	// key is now K_{seq}: the key of the first line the log lacks (or of
	// the bad one). Check the lines that are not the log's with it.
	end := seq
	if err := checkMACs(cpPath, idx, end, key, conflictKeys); err != nil {
		return rep, err
	}
	var warns []string
	dmg.Checkpoint, warns = judge(idx, bad, end, genesisLine, rep.Entries, cpPath)
	rep.Warnings = append(rep.Warnings, warns...)
	checkStoreMACs(sidx, end, key, conflictKeys)
	sworst, swarns, sproblems := judgeStore(sidx, sbad, end, genesisTime, rep.Entries)
	rep.Warnings = append(rep.Warnings, swarns...)
	dmg.Problems = append(dmg.Problems, sproblems...)
	rep.StoreCheckpoints = len(o.Store)
	for i := range rep.Copies {
		rep.Copies[i].Newest = copyNewest[rep.Copies[i].File]
	}
	// The newest checkpoint the log does not reach is named, whichever
	// copy holds it (the off-box one when both do).
	if sworst != nil && (dmg.Checkpoint == nil || sworst.Seq > dmg.Checkpoint.Seq) {
		dmg.Checkpoint = sworst
	}
	rep.OffBox = len(idx) + len(bad)
	if dmg.Checkpoint == nil && cpErr != nil {
		dmg.Checkpoint = &CheckpointProblem{File: cpPath, Seq: 0, Reason: "the off-box checkpoint copy is missing (it was deleted, or --checkpoints names the wrong file)"}
	} else if dmg.Checkpoint == nil && rep.OffBox == 0 {
		dmg.Checkpoint = &CheckpointProblem{File: cpPath, Seq: 0, Reason: "the off-box copy is empty: it holds no checkpoint (the genesis checkpoint was written to it when the log was made)"}
	}
	if haveInLog && rep.OffBox > 0 && newestInLog > rep.NewestOffBox {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the off-box copy's newest checkpoint is seq %d but the log holds one at seq %d: a copy failed, or the off-box copy was rolled back", rep.NewestOffBox, newestInLog))
	}
	if dmg.any() {
		return rep, dmg
	}
	return rep, nil
}

// checkLine checks one line (without newline) as the log's line of seq,
// after the line whose hash is prev, under ratchet key k; it returns why
// it fails, or "".
func checkLine(line []byte, seq uint64, prev string, k []byte, out *Entry) string {
	e, why := parse(line)
	*out = e
	switch {
	case why != "":
		return why
	case e.Seq != seq:
		return fmt.Sprintf("seq %d where %d belongs (entries before it were removed, or entries were moved)", e.Seq, seq)
	case e.Prev != prev && seq == 0:
		return "the first line names a line before it (entries were removed from the start)"
	case e.Prev != prev:
		return fmt.Sprintf("prev is not the hash of the line before (seq %d was changed, or entries were removed or moved)", seq-1)
	case !macOK(e, k):
		return "the MAC does not match (the entry was edited, or forged without the key)"
	}
	return ""
}

// checkMACs checks, in a second read of the off-box copy, the MACs of the
// lines that are not the log's: those at a seq the log holds under the
// key the walk kept (keys), and up to maxBeyond past the log's end
// (end, whose key is k), ratcheting at most maxAhead steps past it. A
// line left unchecked stays so (judge says why).
func checkMACs(path string, idx []offBox, end uint64, k []byte, keys map[uint64][]byte) error {
	want := map[int]*offBox{}
	beyond := 0
	for i := range idx {
		c := &idx[i]
		switch {
		case c.met:
		case c.seq < end && keys[c.seq] != nil:
			want[c.fileLine] = c
		case c.seq >= end && c.seq-end <= maxAhead && beyond < maxBeyond:
			want[c.fileLine] = c
			beyond++
		}
	}
	if len(want) == 0 {
		return nil
	}
	type far struct {
		c *offBox
		e Entry
	}
	var past []far
	err := eachOffBoxLine(path, func(n int, line []byte, long bool) error {
		c := want[n]
		if c == nil || long || sha256.Sum256(line) != c.hash {
			return nil // a line appended (or changed) since the first read: not checked
		}
		e, _ := parse(line)
		if c.seq < end {
			c.checked, c.macOK = true, macOK(e, keys[c.seq])
		} else {
			past = append(past, far{c, e})
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(past, func(i, j int) bool { return past[i].c.seq < past[j].c.seq })
	key := bytes.Clone(k)
	defer func() { clear(key) }()
	at := end
	for _, p := range past {
		for ; at < p.c.seq; at++ { // at most maxAhead steps in all
			next := ratchet(key)
			clear(key)
			key = next
		}
		p.c.checked, p.c.macOK = true, macOK(p.e, key)
	}
	return nil
}

// judge returns the problem with the newest off-box checkpoint the intact
// log (end lines, entries of them) does not reach, or with a forged or
// damaged line; and a warning per line of an earlier log: a line that is
// not the log's, does not carry its MAC, and comes before the line
// holding this log's genesis (genesisLine) in the copy, as what an
// earlier log wrote there does when 'audit init' ran again.
func judge(idx, bad []offBox, end uint64, genesisLine, entries int, file string) (*CheckpointProblem, []string) {
	var worst *CheckpointProblem
	note := func(c offBox, why string) {
		if worst == nil || c.seq >= worst.Seq {
			worst = &CheckpointProblem{File: file, Line: c.fileLine, Seq: c.seq, Reason: why}
		}
	}
	for _, c := range bad {
		note(c, c.why)
	}
	var earlier []string
	for _, c := range idx {
		if c.met {
			continue
		}
		switch {
		case c.checked && c.macOK:
			note(c, ownUnreached(c.seq, end, entries))
		case c.fileLine < genesisLine:
			earlier = append(earlier, fmt.Sprintf("%d (seq %d)", c.fileLine, c.seq))
		case c.checked && c.seq < end:
			note(c, "the log's entry at that seq is another line, and this checkpoint does not carry the log's MAC: it was forged or edited, or the log was rewritten from there on")
		case c.checked:
			note(c, "the off-box checkpoint's MAC does not match: it was forged or edited")
		case c.seq < end:
			note(c, fmt.Sprintf("the log's entry at that seq is another line (the log was rewritten from there on, or this line was forged; more than %d such lines, not all MAC-checked)", maxBeyond))
		case c.seq-end > maxAhead:
			note(c, fmt.Sprintf("its seq is more than %d past the log's end: forged, or the log lost that many entries", maxAhead))
		default:
			note(c, fmt.Sprintf("more than %d off-box lines past the log's end (not all MAC-checked): forged, or the log's tail was cut", maxBeyond))
		}
	}
	var warns []string
	if len(earlier) > 0 {
		warns = append(warns, fmt.Sprintf("%s: %d checkpoint line(s) are not this log's and come before its genesis (line %d): an earlier log's, left when 'audit init' ran again; ignored: line %s", file, len(earlier), genesisLine, someOf(earlier)))
	}
	return worst, warns
}

// ownUnreached says why a checkpoint carrying the log's MAC is not the
// log's line at its seq: the log was rewritten there, or ends before it.
func ownUnreached(seq, end uint64, entries int) string {
	if seq < end {
		return "the log's entry at that seq is another line, and this checkpoint carries the log's MAC: the log was rewritten from there on"
	}
	return fmt.Sprintf("the intact log ends at seq %d (%d entries): its tail was cut or damaged before this checkpoint", int64(end)-1, entries)
}

// someOf lists the first ten of items, and how many more there are.
func someOf(items []string) string {
	const show = 10
	list := strings.Join(items[:min(len(items), show)], ", ")
	if len(items) > show {
		list += fmt.Sprintf(" and %d more", len(items)-show)
	}
	return list
}

// offBox is one checkpoint line of the off-box copy, as an index: its
// hash, not its bytes (checkMACs reads again the few it needs).
type offBox struct {
	fileLine int
	seq      uint64
	hash     [sha256.Size]byte
	met      bool   // it is the log's line at seq
	checked  bool   // its MAC was checked (checkMACs)...
	macOK    bool   // ...and is the log's
	why      string // what is wrong with the line (bad lines only)
}

// errOffBoxTooLong: the off-box copy holds more lines than verify reads.
var errOffBoxTooLong = fmt.Errorf("it holds more than %d lines: verify reads no more (start a new log, keeping this one and its copy as evidence: docs/audit.md, \"Repair\")", maxOffBoxLines)

// readCheckpoints reads the off-box copy, streaming: the index of its
// checkpoint lines sorted by seq, and its damaged lines (a line that is
// neither a checkpoint nor a record line in their one encoding). Record
// lines are skipped (offBoxRecords reads them).
func readCheckpoints(path string) (idx, bad []offBox, err error) {
	lines := 0
	err = eachOffBoxLine(path, func(n int, line []byte, long bool) error {
		if len(line) == 0 && !long {
			return nil
		}
		if lines++; lines > maxOffBoxLines {
			return fmt.Errorf("the off-box copy %q: %w", path, errOffBoxTooLong)
		}
		if long {
			bad = append(bad, offBox{fileLine: n, why: fmt.Sprintf("the off-box line is longer than %d bytes: not a checkpoint", maxLine)})
			return nil
		}
		if _, ok := parseRecordLine(line); ok {
			return nil
		}
		e, why := parse(line)
		c := offBox{fileLine: n, seq: e.Seq, hash: sha256.Sum256(line)}
		switch {
		case why != "":
			c.why = "the off-box checkpoint line is damaged: " + why
		case e.Kind != KindCheckpoint:
			c.why = "the off-box copy holds an entry that is not a checkpoint"
		}
		if c.why != "" {
			bad = append(bad, c)
		} else {
			idx = append(idx, c)
		}
		return nil
	})
	sort.SliceStable(idx, func(i, j int) bool { return idx[i].seq < idx[j].seq })
	return idx, bad, err
}

// offBoxRecord is a record line of the off-box copy.
type offBoxRecord struct {
	fileLine int
	rec      Record
}

// offBoxRecords returns the newest maxRecordLines record lines of the
// off-box copy, newest first.
func offBoxRecords(path string) ([]offBoxRecord, error) {
	var recs []offBoxRecord
	lines := 0
	err := eachOffBoxLine(path, func(n int, line []byte, long bool) error {
		if lines++; lines > maxOffBoxLines {
			return fmt.Errorf("the off-box copy %q: %w", path, errOffBoxTooLong)
		}
		if rec, ok := parseRecordLine(line); !long && ok {
			if len(recs) == maxRecordLines {
				recs = recs[1:]
			}
			recs = append(recs, offBoxRecord{n, rec})
		}
		return nil
	})
	slices.Reverse(recs)
	return recs, err
}

// eachOffBoxLine calls fn with each line of the file at path (without its
// newline; only valid during the call) under a shared lock; a line
// longer than maxLine comes as long, without its bytes.
func eachOffBoxLine(path string, fn func(n int, line []byte, long bool) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_SH); err != nil {
		return err
	}
	return eachLine(f, fn)
}

// eachLine calls fn with each line of r, in order, from 1; a last line
// without a newline comes too.
func eachLine(r io.Reader, fn func(n int, line []byte, long bool) error) error {
	br := bufio.NewReaderSize(r, maxLine)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		long := false
		for errors.Is(err, bufio.ErrBufferFull) {
			long = true
			_, err = br.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return err
		}
		if long {
			line = nil
		} else {
			line = bytes.TrimSuffix(line, []byte{'\n'})
		}
		if err == io.EOF && len(line) == 0 && !long {
			return nil
		}
		if ferr := fn(n, line, long); ferr != nil {
			return ferr
		}
		if err == io.EOF {
			return nil
		}
	}
}

// Scan reads the log in dir without a key, streaming: it calls fn with
// every whole line's entry in its encoding, with the hash chain checked
// (not the MACs: that takes the sealed key, see Verify). At the first
// line that fails it stops with a *Damage naming it.
func Scan(dir string, fn func(Entry) error) error {
	path := filepath.Join(dir, LogName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%q: %w", path, ErrNoLog)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, maxLine)
	prev := ""
	for n := 1; ; n++ {
		seq := uint64(n - 1)
		line, err := br.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 {
			return nil
		}
		why := ""
		var e Entry
		switch {
		case err == io.EOF:
			why = "the last line is not a whole entry"
		case errors.Is(err, bufio.ErrBufferFull):
			why = fmt.Sprintf("longer than %d bytes: not an entry", maxLine)
		case err != nil:
			return fmt.Errorf("reading %q: %w", path, err)
		default:
			line = line[:len(line)-1]
			e, why = parse(line)
			switch {
			case why != "":
			case e.Seq != seq:
				why = fmt.Sprintf("seq %d where %d belongs", e.Seq, seq)
			case e.Prev != prev:
				why = "prev is not the hash of the line before"
			}
		}
		if why != "" {
			return &Damage{Log: path, BadEntry: &BadEntry{Line: n, Seq: seq, Reason: why}}
		}
		prev = hashLine(line)
		if err := fn(e); err != nil {
			return err
		}
	}
}

// storeCP is one checkpoint in the store, or in a further copy (file
// and line set), as Verify indexes it.
type storeCP struct {
	name    string
	file    string
	line    int
	seq     uint64
	hash    [sha256.Size]byte
	e       Entry
	met     bool // it is the log's line at seq
	checked bool // its MAC was checked (checkStoreMACs)...
	macOK   bool // ...and is the log's
}

// storeIndex indexes the store's readable checkpoints by seq, and
// returns the others (unreadable, or not a checkpoint line) as bad ones.
func storeIndex(cps []StoredCheckpoint) (idx []storeCP, bad []storeBad) {
	for _, c := range cps {
		if c.Err != nil {
			bad = append(bad, storeBad{name: c.Name, err: c.Err})
			continue
		}
		cp, err := indexLine(c.Line)
		if err != nil {
			bad = append(bad, storeBad{name: c.Name, err: err})
			continue
		}
		cp.name = c.Name
		idx = append(idx, cp)
	}
	sort.SliceStable(idx, func(i, j int) bool { return idx[i].seq < idx[j].seq })
	return idx, bad
}

// storeBad is a store checkpoint, or a line of a further copy, that
// cannot vouch for the log.
type storeBad struct {
	name string // the store object
	file string // or the copy...
	line int    // ...and its line
	err  error
}

func (b storeBad) problem() string {
	if b.file != "" {
		return fmt.Sprintf("the checkpoint copy %s line %d cannot vouch for the log: %v", b.file, b.line, b.err)
	}
	return fmt.Sprintf("the store's audit checkpoint %s cannot vouch for the log: %v ('holdfast verify' reports the object)", b.name, b.err)
}

// indexLine indexes one checkpoint line of the store or of a copy.
func indexLine(line []byte) (storeCP, error) {
	e, why := parse(line)
	switch {
	case why != "":
		return storeCP{}, fmt.Errorf("its line is not an entry: %s", why)
	case e.Kind != KindCheckpoint:
		return storeCP{}, errors.New("its line is an entry that is not a checkpoint")
	}
	return storeCP{seq: e.Seq, hash: sha256.Sum256(line), e: e}, nil
}

// copyIndex reads a further copy of checkpoint lines (at most
// maxCopyLines; empty lines are skipped) under a shared lock.
func copyIndex(path string) (idx []storeCP, bad []storeBad, err error) {
	lines := 0
	err = eachOffBoxLine(path, func(n int, line []byte, long bool) error {
		if len(line) == 0 && !long {
			return nil
		}
		if lines++; lines > maxCopyLines {
			return fmt.Errorf("it holds more than %d lines: verify reads no more", maxCopyLines)
		}
		if long {
			bad = append(bad, storeBad{file: path, line: n, err: fmt.Errorf("longer than %d bytes: not a checkpoint", maxLine)})
			return nil
		}
		cp, err := indexLine(line)
		if err != nil {
			bad = append(bad, storeBad{file: path, line: n, err: err})
			return nil
		}
		cp.file, cp.line = path, n
		idx = append(idx, cp)
		return nil
	})
	return idx, bad, err
}

// checkStoreMACs checks the MACs of the store's checkpoints that are not
// the log's lines: at a seq the log holds under the key the walk kept
// (keys), past its end (end, whose key is k) by ratcheting at most
// maxAhead steps. The store keeps a handful (repo.AuditCheckpointsKept).
func checkStoreMACs(idx []storeCP, end uint64, k []byte, keys map[uint64][]byte) {
	key := bytes.Clone(k)
	defer func() { clear(key) }()
	at := end
	for i := range idx { // in seq order
		c := &idx[i]
		switch {
		case c.met:
		case c.seq < end:
			if kk := keys[c.seq]; kk != nil {
				c.checked, c.macOK = true, macOK(c.e, kk)
			}
		case c.seq-end <= maxAhead:
			for ; at < c.seq; at++ {
				next := ratchet(key)
				clear(key)
				key = next
			}
			c.checked, c.macOK = true, macOK(c.e, key)
		}
	}
}

// judgeStore returns the newest store checkpoint the intact log (end
// lines, entries of them) does not reach, or that is forged; a warning
// for an earlier log's checkpoints (not carrying this log's MAC, and
// older than its genesis: left when 'audit init' ran again); and a
// problem for each that could not be read.
func judgeStore(idx []storeCP, bad []storeBad, end uint64, genesis time.Time, entries int) (*CheckpointProblem, []string, []string) {
	var worst *CheckpointProblem
	note := func(c storeCP, why string) {
		// At one seq, a store checkpoint is named before a copy's.
		if worst == nil || c.seq > worst.Seq || (c.seq == worst.Seq && (c.file == "" || worst.Store == "")) {
			worst = &CheckpointProblem{Store: c.name, File: c.file, Line: c.line, Seq: c.seq, Reason: why}
		}
	}
	var earlier, earlierCopies, problems []string
	for _, c := range bad {
		problems = append(problems, c.problem())
	}
	for _, c := range idx {
		if c.met {
			continue
		}
		switch {
		case c.checked && c.macOK:
			note(c, ownUnreached(c.seq, end, entries))
		case c.checked && !genesis.IsZero() && c.e.Time.Before(genesis) && c.file != "":
			earlierCopies = append(earlierCopies, fmt.Sprintf("%s line %d", c.file, c.line))
		case c.checked && !genesis.IsZero() && c.e.Time.Before(genesis):
			earlier = append(earlier, c.name)
		case c.checked && c.seq < end:
			note(c, "the log's entry at that seq is another line, and this checkpoint does not carry the log's MAC: it was forged, or the log was rewritten from there on")
		case c.checked:
			note(c, "the checkpoint's MAC does not match: it was forged")
		case c.seq < end:
			note(c, fmt.Sprintf("the log's entry at that seq is another line (more than %d such lines, not all MAC-checked)", maxBeyond))
		default:
			note(c, fmt.Sprintf("its seq is more than %d past the log's end: forged, or the log lost that many entries", maxAhead))
		}
	}
	var warns []string
	if len(earlier) > 0 {
		warns = append(warns, fmt.Sprintf("the store holds %d audit checkpoint(s) that are not this log's and are older than its genesis: an earlier log's, left when 'audit init' ran again; ignored: %s", len(earlier), strings.Join(earlier, ", ")))
	}
	if len(earlierCopies) > 0 {
		warns = append(warns, fmt.Sprintf("%d checkpoint copy line(s) are not this log's and are older than its genesis: an earlier log's; ignored: %s", len(earlierCopies), someOf(earlierCopies)))
	}
	return worst, warns, problems
}
