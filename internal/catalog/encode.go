package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// nanos stores a time as unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos; times come back in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// fixed scans a BLOB of exactly len(dst) bytes into dst.
type fixed struct {
	dst  []byte
	what string
}

func (f fixed) Scan(v any) error {
	b, ok := v.([]byte)
	if !ok {
		return fmt.Errorf("%s: stored as %T, want %d-byte blob", f.what, v, len(f.dst))
	}
	if len(b) != len(f.dst) {
		return fmt.Errorf("%s: stored blob is %d bytes, want %d", f.what, len(b), len(f.dst))
	}
	copy(f.dst, b)
	return nil
}

// boolInt stores a flag as the integer 1 or 0 (SQLite's booleans; a
// PostgreSQL BIGINT column takes no Go bool).
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// blob makes sure an empty slice is stored as an empty BLOB, not NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// encodeMeta encodes a metadata map canonically: the pair count, then each
// pair in key order as uvarint length + key bytes, uvarint length + value
// bytes. An empty or nil map is an empty blob. Lossless for any bytes, and
// one encoding per map.
func encodeMeta(m map[string]string) []byte {
	if len(m) == 0 {
		return []byte{}
	}
	ks := make([]string, 0, len(m))
	n := binary.MaxVarintLen64
	for k, v := range m {
		ks = append(ks, k)
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	slices.Sort(ks)
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(m)))
	for _, k := range ks {
		v := m[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

var errBadMeta = errors.New("bad metadata encoding")

// decodeMeta is the inverse of encodeMeta; it accepts only the canonical
// encoding. An empty blob is a nil map.
func decodeMeta(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || count == 0 || count > uint64(len(b)) {
		return nil, errBadMeta
	}
	b = b[n:]
	next := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	m := make(map[string]string, count)
	prev := ""
	for i := uint64(0); i < count; i++ {
		k, ok := next()
		if !ok {
			return nil, errBadMeta
		}
		v, ok := next()
		if !ok {
			return nil, errBadMeta
		}
		if i > 0 && k <= prev {
			return nil, errBadMeta
		}
		m[k] = v
		prev = k
	}
	if len(b) != 0 {
		return nil, errBadMeta
	}
	return m, nil
}

// prefixEnd returns the smallest string greater than every string with the
// given prefix, and false if there is none (the prefix is all 0xff).
func prefixEnd(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
