package object

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"

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
