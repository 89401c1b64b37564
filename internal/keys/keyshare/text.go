package keyshare

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// The share file (docs/keys.md, "Share format"): '#' lines are comments for
// the person who keeps it; then "name: value" lines in this order, the
// data as hex in groups of 8 digits, and the checksum line last.
const (
	textTitle    = "HOLDFAST ROOT KEY SHARE"
	textFormat   = 1
	groupsOnLine = 8
)

// sourceNames are the source kinds as the file spells them.
var sourceNames = map[keys.SourceKind]string{keys.SourceKeyring: "keyring", keys.SourcePKCS11: "pkcs11"}

// SourceName names a source kind as share files do.
func SourceName(k keys.SourceKind) string {
	if n, ok := sourceNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind-%d", k)
}

// checksum is the first 8 bytes of SHA-256 over the share's canonical
// binary form, as 16 hex digits: it covers every field and the data, so a
// changed digit anywhere shows, and it names the share in messages.
func checksum(s Share) string {
	h := sha256.New()
	h.Write([]byte("holdfast/v1/key-share\x00"))
	h.Write([]byte{textFormat, byte(s.Source)})
	h.Write(s.Repo[:])
	h.Write(s.Set[:])
	var n [8]byte
	for _, v := range []int{s.Index, s.Count, s.Threshold} {
		binary.BigEndian.PutUint16(n[:2], uint16(v))
		h.Write(n[:2])
	}
	binary.BigEndian.PutUint64(n[:], uint64(s.Created.Unix()))
	h.Write(n[:])
	h.Write(s.Y)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// FileName is the share's suggested file name.
func (s Share) FileName() string {
	return fmt.Sprintf("holdfast-%x-share-%d-of-%d.txt", s.Repo[:4], s.Index, s.Count)
}

// Marshal returns the share file's text. It holds the share: the caller
// clears it.
func (s Share) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n", textTitle)
	fmt.Fprintf(&b, "# Share %d of %d. Any %d shares of set %x rebuild the root keys of\n", s.Index, s.Count, s.Threshold, s.Set)
	fmt.Fprintf(&b, "# repository %x with 'holdfast keys restore'; fewer reveal nothing.\n", s.Repo)
	b.WriteString("# Keep it apart from the other shares. Do not edit the lines below.\n")
	fmt.Fprintf(&b, "format: %d\n", textFormat)
	fmt.Fprintf(&b, "repository: %x\n", s.Repo)
	fmt.Fprintf(&b, "set: %x\n", s.Set)
	fmt.Fprintf(&b, "source: %s\n", SourceName(s.Source))
	fmt.Fprintf(&b, "share: %d of %d\n", s.Index, s.Count)
	fmt.Fprintf(&b, "threshold: %d\n", s.Threshold)
	fmt.Fprintf(&b, "created: %s\n", s.Created.UTC().Format(time.RFC3339))
	b.WriteString("data:\n")
	hx := hex.EncodeToString(s.Y)
	for i := 0; i < len(hx); {
		var line []string
		for g := 0; g < groupsOnLine && i < len(hx); g++ {
			end := min(i+8, len(hx))
			line = append(line, hx[i:end])
			i = end
		}
		b.WriteString("  " + strings.Join(line, " ") + "\n")
	}
	fmt.Fprintf(&b, "checksum: %s\n", checksum(s))
	return b.Bytes()
}

// Parse reads a share file's text; name (the file's name) is only used in
// errors. A file that does not parse, or whose checksum does not match
// its content, is ErrCorruptShare, and the error names the file and the
// checksum it shows.
func Parse(name string, text []byte) (Share, error) {
	s, shown, err := parse(text)
	if err != nil {
		if shown != "" {
			return Share{}, fmt.Errorf("%w: share file %q (checksum %s): %v", ErrCorruptShare, name, shown, err)
		}
		return Share{}, fmt.Errorf("%w: share file %q: %v", ErrCorruptShare, name, err)
	}
	if got := checksum(s); got != shown {
		clear(s.Y)
		return Share{}, fmt.Errorf("%w: share file %q (share %d of %d, checksum %s): its content does not match its checksum (it hashes to %s); a digit was changed or lost — use another share",
			ErrCorruptShare, name, s.Index, s.Count, shown, got)
	}
	s.Checksum = shown
	return s, nil
}

// parse returns the share and the checksum the file shows (as soon as it
// is known, even when something else fails, so that errors can name it).
func parse(text []byte) (Share, string, error) {
	var s Share
	fields := map[string]string{}
	var data strings.Builder
	inData := false
	// Errors name line numbers and fields, never what a line holds: the
	// file may be a share, or anything else given by mistake (a
	// passphrase file, say).
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if inData && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			data.WriteString(strings.ReplaceAll(strings.TrimSpace(line), " ", ""))
			continue
		}
		inData = false
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return s, fields["checksum"], fmt.Errorf("line %d is not 'name: value'", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if _, dup := fields[k]; dup {
			return s, fields["checksum"], fmt.Errorf("line %d repeats a field", n)
		}
		fields[k] = v
		if k == "data" {
			inData = true
		}
	}
	shown := fields["checksum"]
	if shown == "" {
		return s, "", fmt.Errorf("no checksum line")
	}
	if f := fields["format"]; f != strconv.Itoa(textFormat) {
		return s, shown, fmt.Errorf("the format line is missing or not %d (the format this build reads)", textFormat)
	}
	if err := hexField(fields["repository"], s.Repo[:]); err != nil {
		return s, shown, fmt.Errorf("repository: %v", err)
	}
	if err := hexField(fields["set"], s.Set[:]); err != nil {
		return s, shown, fmt.Errorf("set: %v", err)
	}
	found := false
	for k, n := range sourceNames {
		if fields["source"] == n {
			s.Source, found = k, true
		}
	}
	if !found {
		return s, shown, fmt.Errorf("the source line is missing or names no source this build knows")
	}
	if _, err := fmt.Sscanf(fields["share"], "%d of %d", &s.Index, &s.Count); err != nil {
		return s, shown, fmt.Errorf("the share line is missing or not 'I of N'")
	}
	var err error
	if s.Threshold, err = strconv.Atoi(fields["threshold"]); err != nil {
		return s, shown, fmt.Errorf("the threshold line is missing or not a number")
	}
	if s.Index < 1 || s.Index > s.Count || s.Count > 255 || s.Threshold < 2 || s.Threshold > s.Count {
		return s, shown, fmt.Errorf("share %d of %d with threshold %d is impossible", s.Index, s.Count, s.Threshold)
	}
	if s.Created, err = time.Parse(time.RFC3339, fields["created"]); err != nil {
		return s, shown, fmt.Errorf("the created line is missing or not an RFC 3339 time")
	}
	hx := data.String()
	if hx == "" || len(hx)%2 != 0 {
		return s, shown, fmt.Errorf("data: %d hex digits", len(hx))
	}
	if s.Y, err = hex.DecodeString(hx); err != nil {
		return s, shown, fmt.Errorf("data: not hex")
	}
	return s, shown, nil
}

func hexField(v string, out []byte) error {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != len(out) {
		return fmt.Errorf("missing or not %d hex bytes", len(out))
	}
	copy(out, b)
	return nil
}
