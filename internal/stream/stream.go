package stream

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

const segmentInfo = "holdfast/v1/segment"

// ErrChunk is returned when a chunk fails authentication: edited, moved,
// dropped, repeated, truncated or opened with the wrong key.
var ErrChunk = errors.New("chunk failed authentication")

// SegmentAEAD derives segment key i from the data key and the segment's salt.
func SegmentAEAD(dek secret.Key, salt []byte) (cipher.AEAD, error) {
	var aead cipher.AEAD
	err := dek.Use(func(kb []byte) error {
		k, err := hkdf.Key(sha256.New, kb, salt, segmentInfo, 32)
		if err != nil {
			return err
		}
		defer clear(k)
		aead, err = keys.NewGCM(k)
		return err
	})
	return aead, err
}

// nonce writes the chunk nonce for chunk idx into n (12 bytes).
func nonce(n *[12]byte, idx uint64, final bool) {
	n[0], n[1], n[2] = 0, 0, 0
	binary.BigEndian.PutUint64(n[3:11], idx)
	if final {
		n[11] = 1
	} else {
		n[11] = 0
	}
}

// Seal appends the ciphertext of a whole segment pt to dst and returns it.
// len(result)-len(dst) == format.SegmentCTLen(len(pt)).
func Seal(aead cipher.AEAD, dst, pt []byte) []byte {
	var n [12]byte
	chunks := format.Chunks(uint64(len(pt)))
	for i := uint64(0); i < chunks; i++ {
		lo := i * format.ChunkSize
		hi := min(lo+format.ChunkSize, uint64(len(pt)))
		nonce(&n, i, i == chunks-1)
		dst = aead.Seal(dst, n[:], pt[lo:hi], nil)
	}
	return dst
}

// OpenChunk authenticates and decrypts chunk idx (ciphertext ct, tag
// included), appending the plaintext to dst.
func OpenChunk(aead cipher.AEAD, dst, ct []byte, idx uint64, final bool) ([]byte, error) {
	var n [12]byte
	nonce(&n, idx, final)
	out, err := aead.Open(dst, n[:], ct, nil)
	if err != nil {
		return dst, ErrChunk
	}
	return out, nil
}

// Open authenticates and decrypts a whole segment whose plaintext is ptLen
// bytes, appending to dst. ct must be exactly SegmentCTLen(ptLen) bytes.
func Open(aead cipher.AEAD, dst, ct []byte, ptLen uint64) ([]byte, error) {
	if uint64(len(ct)) != format.SegmentCTLen(ptLen) {
		return dst, ErrChunk
	}
	chunks := format.Chunks(ptLen)
	var err error
	for i := uint64(0); i < chunks; i++ {
		lo := i * format.ChunkCTSize
		hi := min(lo+format.ChunkCTSize, uint64(len(ct)))
		if dst, err = OpenChunk(aead, dst, ct[lo:hi], i, i == chunks-1); err != nil {
			return dst, err
		}
	}
	return dst, nil
}
