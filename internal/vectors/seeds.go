package vectors

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
)

// Seeds are fuzzing seeds taken from the committed vectors: stored objects
// and the decrypted plaintexts of their manifests and system payloads.
type Seeds struct {
	Objects   [][]byte // whole stored objects, positive and negative
	Headers   [][]byte
	Manifests [][]byte // manifest plaintexts
	Records   [][]byte // key journal entry plaintexts
	Markers   [][]byte // marker plaintexts
	Footers   [][]byte // footer plaintexts
	Backups   [][]byte // catalog backup plaintexts
	// Checkpoints are audit checkpoint plaintexts.
	Checkpoints [][]byte
}

// LoadIndex reads dir/index.json.
func LoadIndex(dir string) (Index, error) {
	var idx Index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return idx, err
	}
	err = json.Unmarshal(b, &idx)
	return idx, err
}

// Open reads vector c (its bytes data) as Holdfast reads a store without a
// catalog, returning the manifest and plaintext. It stores the bytes in a
// local store in tmpDir first.
func Open(ctx context.Context, tmpDir string, c Case, data []byte) (*format.Manifest, []byte, error) {
	st, err := local.Open(tmpDir)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	if err := st.Put(ctx, c.StoreName, bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, nil, err
	}
	defer st.Delete(ctx, c.StoreName)
	return OpenIn(ctx, st, c)
}

// OpenIn reads vector c from st, where it is stored under c.StoreName.
func OpenIn(ctx context.Context, st store.Store, c Case) (*format.Manifest, []byte, error) {
	kb, err := hex.DecodeString(c.KEK)
	if err != nil {
		return nil, nil, err
	}
	kek, err := secret.FromBytes(kb)
	if err != nil {
		return nil, nil, err
	}
	var ids [3]keys.ID
	for i, s := range []string{c.Repo, c.BucketID, c.ObjectID} {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 16 {
			return nil, nil, fmt.Errorf("vector %s: bad id %q", c.Name, s)
		}
		copy(ids[i][:], b)
	}
	ad := keys.AD{Purpose: keys.Purpose(c.Purpose), Repo: ids[0], Bucket: ids[1], KEKVersion: c.KEKVersion, Object: ids[2]}
	unwrap := func(h format.Header) (secret.Key, keys.AD, error) {
		k, err := keys.UnwrapSoftware(kek, ad, h.Wrapped)
		return k, ad, err
	}
	o, err := object.Open(ctx, st, c.StoreName, object.Expect{Identity: object.Identity{Repo: ad.Repo, Object: ad.Object}}, unwrap)
	if err != nil {
		return nil, nil, err
	}
	defer o.Wipe()
	var buf bytes.Buffer
	if _, err := o.WriteTo(ctx, &buf); err != nil {
		return nil, nil, err
	}
	return o.Manifest, buf.Bytes(), nil
}

// LoadSeeds reads the committed object vectors in dir.
func LoadSeeds(dir, tmpDir string) (*Seeds, error) {
	idx, err := LoadIndex(dir)
	if err != nil {
		return nil, err
	}
	s := &Seeds{}
	for _, c := range idx.Cases {
		data, err := os.ReadFile(filepath.Join(dir, c.File))
		if err != nil {
			return nil, err
		}
		s.Objects = append(s.Objects, data)
		if len(data) >= format.HeaderLen {
			s.Headers = append(s.Headers, data[:format.HeaderLen])
		}
		if c.Expect != "ok" {
			continue
		}
		m, plain, err := Open(context.Background(), tmpDir, c, data)
		if err != nil {
			return nil, fmt.Errorf("vector %s: %w", c.Name, err)
		}
		mb, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		s.Manifests = append(s.Manifests, mb)
		lens := make([]uint64, len(m.Segments))
		for i, sg := range m.Segments {
			lens[i] = sg.Len
		}
		sz := format.ComputeSizes(lens, len(mb))
		s.Footers = append(s.Footers, format.Footer{ManifestOff: sz.ManifestOff, ManifestLen: uint32(sz.ManifestLen)}.Marshal())
		switch m.Kind {
		case format.KindJournal:
			s.Records = append(s.Records, plain)
		case format.KindMarker:
			s.Markers = append(s.Markers, plain)
		case format.KindBackup:
			s.Backups = append(s.Backups, plain)
		case format.KindCheckpoint:
			s.Checkpoints = append(s.Checkpoints, plain)
		}
	}
	return s, nil
}
