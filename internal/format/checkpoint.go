package format

import (
	"bytes"

	"github.com/holdfast/holdfast/internal/keys"
)

// MaxCheckpointLine bounds the audit log line an audit checkpoint object
// carries. A checkpoint line is about 250 bytes; the bound keeps a parser
// from being handed anything but one line.
const MaxCheckpointLine = 4096

// AuditCheckpoint is the plaintext of an audit checkpoint (kind 5): a
// checkpoint line of the repository's audit log (docs/audit.md), byte for
// byte as the log holds it, without its newline. This package does not
// read the line: the audit package checks it against the log.
type AuditCheckpoint struct {
	Repo keys.ID
	Line []byte
}

const checkpointVersion = 1

// Marshal encodes c.
func (c AuditCheckpoint) Marshal() ([]byte, error) {
	if err := checkCheckpointLine(c.Line); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+16+2+len(c.Line))
	b = append(b, checkpointVersion)
	b = append(b, c.Repo[:]...)
	return appendBytes16(b, c.Line), nil
}

func checkCheckpointLine(line []byte) error {
	switch {
	case len(line) == 0 || len(line) > MaxCheckpointLine:
		return Corrupt(LayerManifest, "audit checkpoint line of %d bytes", len(line))
	case bytes.IndexByte(line, '\n') >= 0:
		return Corrupt(LayerManifest, "audit checkpoint line holds a newline")
	}
	return nil
}

// ParseAuditCheckpoint decodes an audit checkpoint plaintext.
func ParseAuditCheckpoint(b []byte) (AuditCheckpoint, error) {
	var c AuditCheckpoint
	rd := reader{b: b}
	if v := rd.u8(); v != checkpointVersion {
		if rd.err != nil {
			return c, Corrupt(LayerManifest, "audit checkpoint truncated")
		}
		return c, Corrupt(LayerManifest, "unsupported audit checkpoint version %d", v)
	}
	rd.id(&c.Repo)
	n := int(rd.u16())
	line := rd.take(n)
	if rd.err != nil {
		return AuditCheckpoint{}, Corrupt(LayerManifest, "audit checkpoint truncated")
	}
	if rd.remaining() != 0 {
		return AuditCheckpoint{}, Corrupt(LayerManifest, "audit checkpoint has %d trailing bytes", rd.remaining())
	}
	if err := checkCheckpointLine(line); err != nil {
		return AuditCheckpoint{}, err
	}
	c.Line = bytes.Clone(line)
	return c, nil
}
