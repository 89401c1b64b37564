package object

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"sync"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// derived holds the per-object keys derived from a data key.
type derived struct {
	dek      secret.Key
	commit   [32]byte
	manifest cipher.AEAD
	footer   cipher.AEAD
	padKey   cipher.Block
}

func derive(dek secret.Key) (*derived, error) {
	d := &derived{dek: dek}
	err := dek.Use(func(kb []byte) error {
		// Each key is HKDF-SHA256(ikm = the data key, salt empty, info):
		// the extract step is the same for all of them, so it runs once
		// (its output, the PRK, is as secret as the data key and is
		// cleared after), and only the expand step runs per key.
		prk, err := hkdf.Extract(sha256.New, kb, nil)
		if err != nil {
			return err
		}
		defer clear(prk)
		c, err := hkdf.Expand(sha256.New, prk, "holdfast/v1/commit", 32)
		if err != nil {
			return err
		}
		copy(d.commit[:], c)
		for _, x := range []struct {
			info string
			set  func([]byte) error
		}{
			{"holdfast/v1/manifest", func(k []byte) (err error) { d.manifest, err = keys.NewGCM(k); return }},
			{"holdfast/v1/footer", func(k []byte) (err error) { d.footer, err = keys.NewGCM(k); return }},
			{"holdfast/v1/padding", func(k []byte) (err error) { d.padKey, err = aes.NewCipher(k); return }},
		} {
			k, err := hkdf.Expand(sha256.New, prk, x.info, 32)
			if err != nil {
				return err
			}
			err = x.set(k)
			clear(k)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return d, err
}

// Commitment returns the commitment C of a data key.
func Commitment(dek secret.Key) ([32]byte, error) {
	d, err := derive(dek)
	if err != nil {
		return [32]byte{}, err
	}
	return d.commit, nil
}

var zeroNonce = make([]byte, 12)

// padStream returns a reader of the padding keystream.
func (d *derived) padStream() cipher.Stream {
	return cipher.NewCTR(d.padKey, make([]byte, aes.BlockSize))
}

// fillPadding writes the first len(dst) bytes of the padding keystream into
// dst, continuing the stream s.
func fillPadding(s cipher.Stream, dst []byte) {
	clear(dst)
	s.XORKeyStream(dst, dst)
}

// padAhead hands the first pad bytes of the padding stream s to each, in
// order, a piece at a time. A padding of more than a small buffer (a 1
// GiB object has 32 MiB) is made on another goroutine a piece ahead, into
// two pooled off-heap buffers, so that making it overlaps what each does
// with it (writing it, or reading and comparing the stored padding); a
// piece is valid only during its call. The first error of each ends it.
func padAhead(s cipher.Stream, pad uint64, each func(piece []byte) error) error {
	if pad <= smallSegment {
		buf := make([]byte, min(pad, 64<<10))
		for pad > 0 {
			n := min(pad, uint64(len(buf)))
			fillPadding(s, buf[:n])
			if err := each(buf[:n]); err != nil {
				return err
			}
			pad -= n
		}
		return nil
	}
	var bufs [2][]byte
	for i := range bufs {
		b, err := smallBufs.Get()
		if err != nil {
			for _, b := range bufs[:i] {
				smallBufs.Put(b)
			}
			return err
		}
		bufs[i] = b
	}
	empty, filled := make(chan []byte, len(bufs)), make(chan []byte, len(bufs))
	for _, b := range bufs {
		empty <- b
	}
	stop := make(chan struct{})
	var made sync.WaitGroup
	made.Go(func() {
		defer close(filled)
		for left := pad; left > 0; {
			var b []byte
			select {
			case b = <-empty:
			case <-stop:
				return
			}
			n := min(left, uint64(len(b)))
			fillPadding(s, b[:n])
			filled <- b[:n] // never blocks: it holds every buffer
			left -= n
		}
	})
	defer func() {
		close(stop)
		made.Wait()
		for _, b := range bufs {
			smallBufs.Put(b)
		}
	}()
	for b := range filled {
		if err := each(b); err != nil {
			return err
		}
		empty <- b[:cap(b)]
	}
	return nil
}

// SealTrailer encrypts a manifest plaintext and the footer that locates it
// at manifestOff, for the object whose header is header and whose data key
// is dek. The Sealer uses the same construction; the multipart path and the
// vector generator use this directly.
func SealTrailer(dek secret.Key, header, manifestPlain []byte, manifestOff uint64) (manifest, footer []byte, err error) {
	d, err := derive(dek)
	if err != nil {
		return nil, nil, err
	}
	mct := d.manifest.Seal(nil, zeroNonce, manifestPlain, header)
	f := format.Footer{ManifestOff: manifestOff, ManifestLen: uint32(len(mct))}
	return mct, d.footer.Seal(nil, zeroNonce, f.Marshal(), header), nil
}
