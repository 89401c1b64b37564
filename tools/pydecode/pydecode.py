#!/usr/bin/python3
"""Independent decoder for the Holdfast storage format, version 1.

Written from docs/format.md and docs/format-keyring.md alone (no Go code
was read). It checks every vector listed in

    <vectors>/object/index.json
    <vectors>/keyring/keyring-v1-vectors.json

Usage (from the repository root):

    /usr/bin/python3 tools/pydecode/pydecode.py testdata/vectors

Each object is read as format.md's "Reading an object" says, without a
catalog, one function per step, in the order of the table; every
rejection names the layer of the step that raised it. A system object's
plaintext (key journal entry, catalog backup, marker, audit checkpoint) is
then decoded
under every rule of its section, and a catalog backup's hash is computed.

It also runs a self-test: the catalog-backup vector's plaintext must be
accepted and a few rule-breaking mutations of it rejected. Those results
are reported (and counted) like the vectors, as `selftest/...`.
"""

import datetime
import hashlib
import hmac
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


# ---------------------------------------------------------------------------
# Errors


class Reject(Exception):
    """A check failed. `layer` is the spec's layer (or error class) name."""

    def __init__(self, layer, reason):
        super().__init__(f"{layer}: {reason}")
        self.layer = layer
        self.reason = reason


# ---------------------------------------------------------------------------
# Primitives (format.md "Conventions"); all from python3-cryptography.


def hkdf(ikm, salt, info, length):
    """HKDF-SHA256; an empty salt is the RFC default (HashLen zeros)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=salt if salt else None,
        info=info,
    ).derive(ikm)


def gcm_open(key, nonce, ciphertext, ad):
    """AES-256-GCM open; returns None if the tag does not verify."""
    if len(ciphertext) < 16:
        return None
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        return None


def ctr_keystream(key, n):
    """The first n bytes of AES-256-CTR(key, counter block 0^16)."""
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(n)) + enc.finalize()


class Reader:
    """A strict big-endian cursor; `layer` is blamed for any overrun."""

    def __init__(self, data, layer):
        self.data = data
        self.pos = 0
        self.layer = layer

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise Reject(self.layer, f"truncated in {what}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack(">H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack(">I", self.take(4, what))[0]

    def u64(self, what):
        return struct.unpack(">Q", self.take(8, what))[0]

    def str(self, what):
        raw = self.take(self.u16(what + " length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(self.layer, f"{what} is not valid UTF-8")

    def end(self):
        if self.pos != len(self.data):
            raise Reject(self.layer, f"{len(self.data) - self.pos} trailing bytes")


# ---------------------------------------------------------------------------
# Constants (format.md)

H = 156  # header
F = 28  # footer
TAG = 16
CHUNK = 65536
MIN_STORED = 4096
MANIFEST_BLOCK = 4096
MANIFEST_MAX_FIXED = 3745  # largest M without its segment table
MANIFEST_PER_SEGMENT = 40  # u64 length + 32-byte salt
MAX_BUCKET_NAME = 63
MAX_KEY = 1024
MAX_CONTENT_TYPE = 256
MAX_META = 2304  # sum over pairs of 4 + |name| + |value|
MAX_SEGMENT_LENGTH = 1 << 40
MAX_SEGMENTS = 1 << 20
ZERO_ID = bytes(16)
MARKER_PREFIX = "holdfast-repo-"

PURPOSE_DATA_KEY = 1
PURPOSE_BUCKET_KEY = 2
PURPOSE_SYSTEM_KEY = 3

KIND_DATA, KIND_JOURNAL, KIND_CATALOG_BACKUP, KIND_MARKER = 1, 2, 3, 4
KIND_AUDIT_CHECKPOINT = 5
MAX_CHECKPOINT_LINE = 4096


# ---------------------------------------------------------------------------
# Key wrap (format.md "Key wrap")


def wrap_ad(purpose, repo_id, bucket_id, kek_version, key_version, object_id):
    ad = (
        b"holdfast/v1/wrap-ad"
        + bytes([purpose])
        + repo_id
        + bucket_id
        + struct.pack(">II", kek_version, key_version)
        + object_id
    )
    assert len(ad) == 76
    return ad


def unwrap_alg1(wrapping_key, wrapped, ad):
    """Alg 1, HKDF-GCM-commit: salt(32) || commit(32) || ct(48)."""
    if len(wrapped) != 112:
        raise Reject("key unwrap", "alg 1 record is not 112 bytes")
    salt, commit, ct = wrapped[:32], wrapped[32:64], wrapped[64:]
    okm = hkdf(wrapping_key, salt, b"holdfast/v1/wrap", 64)
    if not hmac.compare_digest(okm[32:64], commit):
        raise Reject("key unwrap", "wrap commitment differs: not wrapped under this key")
    key = gcm_open(okm[0:32], bytes(12), ct, ad)
    if key is None:
        raise Reject("key unwrap", "wrapped key does not authenticate")
    if len(key) != 32:
        raise Reject("key unwrap", "unwrapped key is not 32 bytes")
    return key


def unwrap_alg2(wrapping_key, wrapped, ad, kcv=None):
    """Alg 2, GCM: nonce(12) || GCM(W, nonce, K, AD) = 60 bytes."""
    if len(wrapped) != 60:
        raise Reject("key unwrap", "alg 2 record is not 60 bytes")
    key = gcm_open(wrapping_key, wrapped[:12], wrapped[12:], ad)
    if key is None:
        raise Reject("key unwrap", "wrapped key does not authenticate")
    if len(key) != 32:
        raise Reject("key unwrap", "unwrapped key is not 32 bytes")
    if kcv is not None:
        got = hkdf(key, b"", b"holdfast/v1/key-check", 32)
        if not hmac.compare_digest(got, kcv):
            raise Reject("key unwrap", "key check value differs")
    return key


# ---------------------------------------------------------------------------
# Size rule (format.md "Sizes and padding rule")


def padme(length):
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    z = e - s
    mask = (1 << z) - 1
    return (length + mask) & ~mask


def chunk_count(seg_len):
    return max(1, -(-seg_len // CHUNK))


def segment_ciphertext_length(seg_len):
    return seg_len + TAG * chunk_count(seg_len)


def manifest_budget(segment_count):
    """B = 4096 * ceil((3745 + 40 n + 16) / 4096)."""
    need = MANIFEST_MAX_FIXED + MANIFEST_PER_SEGMENT * segment_count + TAG
    return MANIFEST_BLOCK * (-(-need // MANIFEST_BLOCK))


def expected_layout(segment_lengths, manifest_len):
    """Returns (T, pad, manifest offset) the size rule demands."""
    s = sum(segment_ciphertext_length(n) for n in segment_lengths)
    u = H + s + F + manifest_budget(len(segment_lengths))
    t = max(MIN_STORED, padme(u))
    pad = t - (H + s + manifest_len + F)
    return t, pad, H + s + pad


# ---------------------------------------------------------------------------
# Store names (format.md "Conventions" and "Repository marker")


def object_id_for_store_name(store_name):
    """The object id a reader uses in the AD, from the name it read.

    A data/system object is named by the lower-case hex of its object id;
    a marker is named holdfast-repo-<repo id> and its object id is the
    repo id. Returns (object id, is_marker_name).
    """
    is_marker = store_name.startswith(MARKER_PREFIX)
    hexid = store_name[len(MARKER_PREFIX):] if is_marker else store_name
    if len(hexid) != 32 or any(c not in "0123456789abcdef" for c in hexid):
        raise Reject("identity", f"store name {store_name!r} is not a lower-case hex id")
    return bytes.fromhex(hexid), is_marker


def store_name_for(object_id, kind):
    if kind == KIND_MARKER:
        return MARKER_PREFIX + object_id.hex()
    return object_id.hex()


# ---------------------------------------------------------------------------
# Reading an object (format.md "Reading an object"), one function per step.


class ReadContext:
    """What the reader brings: the key it tries and where it read from."""

    def __init__(self, wrapping_key, kek_version, purpose, repo_id, bucket_id, store_name):
        self.wrapping_key = wrapping_key
        self.kek_version = kek_version
        self.purpose = purpose
        self.repo_id = repo_id
        self.bucket_id = bucket_id
        self.store_name = store_name
        self.object_id, self.is_marker_name = object_id_for_store_name(store_name)


def step1_size(blob):
    """Step 1, layer `size`: T is at least 4096."""
    if len(blob) < MIN_STORED:
        raise Reject("size", f"stored length {len(blob)} < {MIN_STORED}")
    return len(blob)


def step2_header(blob):
    """Step 2, layer `header`: magic, version, alg, reserved, unused slot."""
    header = blob[:H]
    if header[0:8] != b"HOLDFAST":
        raise Reject("header", "bad magic")
    if header[8] != 0x01:
        raise Reject("header", f"format version {header[8]}")
    alg = header[9]
    if alg not in (1, 2):
        raise Reject("header", f"unknown wrap algorithm {alg}")
    if header[10:12] != b"\0\0":
        raise Reject("header", "reserved bytes not zero")
    slot = header[12:124]
    if alg == 2 and any(slot[60:]):
        raise Reject("header", "unused key-slot bytes not zero")
    return {
        "bytes": header,
        "alg": alg,
        "wrapped": slot if alg == 1 else slot[:60],
        "commitment": header[124:156],
    }


def step3_pin(blob, catalog):
    """Step 3, layer `pin`: only with a catalog (never here)."""
    if catalog is None:
        return
    off, length = catalog["manifest_offset"], catalog["manifest_length"]
    got = pin_of(blob[:H], blob[off:off + length], blob[-F:])
    if not hmac.compare_digest(got, catalog["pin"]):
        raise Reject("pin", "pin differs from the catalog's")


def step4_key_unwrap(header, ctx):
    """Step 4, layer `key unwrap`: AD (purpose, repo, bucket, kek v, 0, object).

    Alg 2 "is used only under root keys", so a data object (purpose 1,
    DEK under a bucket key) with alg 2 is refused here (see README).
    """
    ad = wrap_ad(ctx.purpose, ctx.repo_id, ctx.bucket_id, ctx.kek_version, 0, ctx.object_id)
    if header["alg"] == 1:
        return unwrap_alg1(ctx.wrapping_key, header["wrapped"], ad)
    if ctx.purpose == PURPOSE_DATA_KEY:
        raise Reject("key unwrap", "alg 2 used under a bucket key")
    return unwrap_alg2(ctx.wrapping_key, header["wrapped"], ad)


def step4a_key_unwrap_nonzero(dek):
    """Step 4a, layer `key unwrap`: the unwrapped DEK is not all zeros.

    The table lists 4a before 4, but it can only be checked on the
    unwrapped key, so it runs right after the unwrap.
    """
    if dek == bytes(len(dek)):
        raise Reject("key unwrap", "unwrapped DEK is all zeros")


def derive_object_keys(dek):
    return {
        "commit": hkdf(dek, b"", b"holdfast/v1/commit", 32),
        "manifest": hkdf(dek, b"", b"holdfast/v1/manifest", 32),
        "footer": hkdf(dek, b"", b"holdfast/v1/footer", 32),
        "padding": hkdf(dek, b"", b"holdfast/v1/padding", 32),
    }


def step5_key_commitment(header, dek):
    """Step 5, layer `key commitment`: C recomputed equals the header's."""
    c = hkdf(dek, b"", b"holdfast/v1/commit", 32)
    if not hmac.compare_digest(c, header["commitment"]):
        raise Reject("key commitment", "commitment differs from the header's")
    return derive_object_keys(dek)


def step6_footer(blob, header, keys):
    """Step 6, layer `footer`: the last 28 bytes open to 12 bytes."""
    pt = gcm_open(keys["footer"], bytes(12), blob[-F:], header["bytes"])
    if pt is None:
        raise Reject("footer", "footer does not authenticate")
    if len(pt) != 12:
        raise Reject("footer", f"footer plaintext is {len(pt)} bytes, not 12")
    offset, length = struct.unpack(">QI", pt)
    return offset, length


def step7_size_manifest_position(t, offset, length):
    """Step 7, layer `size`: the footer's manifest location fits T."""
    if offset < H:
        raise Reject("size", f"manifest offset {offset} < {H}")
    if offset + length + F != t:
        raise Reject("size", f"manifest offset {offset} + length {length} + {F} != T {t}")


def step8_manifest(blob, header, keys, offset, length):
    """Step 8, layer `manifest`: open and parse with one valid encoding."""
    pt = gcm_open(keys["manifest"], bytes(12), blob[offset:offset + length], header["bytes"])
    if pt is None:
        raise Reject("manifest", "manifest does not authenticate")
    return parse_manifest(pt)


def parse_manifest(m):
    """M, with every rule of format.md "Manifest" (layer `manifest`)."""
    r = Reader(m, "manifest")
    man = {}
    version = r.u8("manifest version")
    if version != 0x01:
        raise Reject("manifest", f"manifest version {version}")
    man["kind"] = r.u8("kind")
    if man["kind"] not in (KIND_DATA, KIND_JOURNAL, KIND_CATALOG_BACKUP, KIND_MARKER, KIND_AUDIT_CHECKPOINT):
        raise Reject("manifest", f"unknown kind {man['kind']}")
    system = man["kind"] != KIND_DATA
    man["repo_id"] = r.take(16, "repo id")
    man["object_id"] = r.take(16, "object id")  # vs the store name: step 9
    man["bucket_id"] = r.take(16, "bucket id")
    if system and man["bucket_id"] != ZERO_ID:
        raise Reject("manifest", "bucket id not zero for a system object")
    man["key_version"] = r.u32("key version")
    man["bucket"] = r.str("bucket")
    if len(man["bucket"].encode()) > MAX_BUCKET_NAME:
        raise Reject("manifest", f"bucket name longer than {MAX_BUCKET_NAME} bytes")
    if system and man["bucket"]:
        raise Reject("manifest", "bucket name not empty for a system object")
    man["key"] = r.str("key")
    if len(man["key"].encode()) > MAX_KEY:
        raise Reject("manifest", f"key longer than {MAX_KEY} bytes")
    if system and man["key"]:
        raise Reject("manifest", "key not empty for a system object")
    man["object_version"] = r.u64("object version")
    if man["object_version"] < 1:
        raise Reject("manifest", "object version 0")
    if system and man["object_version"] != 1:
        raise Reject("manifest", "object version not 1 for a system object")
    man["modified"] = r.u64("modified")
    man["content_type"] = r.str("content type")
    if len(man["content_type"].encode()) > MAX_CONTENT_TYPE:
        raise Reject("manifest", f"content type longer than {MAX_CONTENT_TYPE} bytes")
    man["meta"] = parse_manifest_meta(r)
    man["length"] = r.u64("plaintext length")
    man["segments"] = parse_manifest_segments(r)
    if sum(n for n, _ in man["segments"]) != man["length"]:
        raise Reject("manifest", "plaintext length is not the sum of the segment lengths")
    man["padding"] = r.u64("padding length")
    r.end()
    man["manifest_plaintext_length"] = len(m)
    return man


def parse_manifest_meta(r):
    meta = {}
    previous = None
    total = 0
    for _ in range(r.u16("meta count")):
        name = r.str("meta name")
        value = r.str("meta value")
        raw = name.encode()
        if previous is not None and raw <= previous:
            raise Reject("manifest", "meta names not strictly increasing")
        previous = raw
        total += 4 + len(raw) + len(value.encode())
        if total > MAX_META:
            raise Reject("manifest", f"metadata larger than {MAX_META} bytes")
        meta[name] = value
    return meta


def parse_manifest_segments(r):
    count = r.u32("segment count")
    if count < 1:
        raise Reject("manifest", "segment count 0")
    if count > MAX_SEGMENTS:
        raise Reject("manifest", f"segment count {count} > 2^20")
    segments = []
    salts = set()
    for i in range(count):
        seg_len = r.u64(f"segment {i} length")
        salt = r.take(32, f"segment {i} salt")
        if seg_len > MAX_SEGMENT_LENGTH:
            raise Reject("manifest", f"segment {i} longer than 2^40")
        if seg_len == 0 and count > 1:
            raise Reject("manifest", f"segment {i} empty in a multi-segment object")
        if salt in salts:
            raise Reject("manifest", f"segment {i} repeats a salt")
        salts.add(salt)
        segments.append((seg_len, salt))
    return segments


def step9_identity(man, ctx):
    """Step 9, layer `identity`: the manifest matches the AD and the name."""
    expected_purpose = PURPOSE_DATA_KEY if man["kind"] == KIND_DATA else PURPOSE_SYSTEM_KEY
    if ctx.purpose != expected_purpose:
        raise Reject("identity", f"kind {man['kind']} read with purpose {ctx.purpose}")
    if man["repo_id"] != ctx.repo_id:
        raise Reject("identity", "repo id differs from the AD's")
    if man["bucket_id"] != ctx.bucket_id:
        raise Reject("identity", "bucket id differs from the AD's")
    if man["key_version"] != ctx.kek_version:
        raise Reject("identity", "key version differs from the kek version")
    if man["object_id"] != ctx.object_id:
        raise Reject("identity", "object id differs from the AD's")
    if man["kind"] == KIND_MARKER and man["object_id"] != man["repo_id"]:
        raise Reject("identity", "marker's object id is not its repo id")
    if store_name_for(man["object_id"], man["kind"]) != ctx.store_name:
        raise Reject("identity", f"object read from {ctx.store_name!r}, not its name")


def step10_size_rule(t, man, offset, length):
    """Step 10, layer `size`: T, pad, offset and length are the rule's."""
    lengths = [n for n, _ in man["segments"]]
    if length != man["manifest_plaintext_length"] + TAG:
        raise Reject("size", "manifest length is not |M| + 16")
    want_t, want_pad, want_offset = expected_layout(lengths, length)
    if t != want_t:
        raise Reject("size", f"stored length {t}, size rule gives {want_t}")
    if man["padding"] != want_pad:
        raise Reject("size", f"manifest padding {man['padding']}, size rule gives {want_pad}")
    if offset != want_offset:
        raise Reject("size", f"manifest offset {offset}, size rule gives {want_offset}")


def step11_payload_chunk(blob, dek, man):
    """Step 11, layer `payload chunk`: every chunk of every segment opens."""
    out = []
    pos = H
    for i, (seg_len, salt) in enumerate(man["segments"]):
        key = hkdf(dek, salt, b"holdfast/v1/segment", 32)
        chunks = chunk_count(seg_len)
        for j in range(chunks):
            pt_len = min(CHUNK, seg_len - j * CHUNK)
            ct = blob[pos:pos + pt_len + TAG]
            if len(ct) != pt_len + TAG:
                raise Reject("size", f"body ends inside segment {i} chunk {j}")
            nonce = j.to_bytes(11, "big") + (b"\x01" if j == chunks - 1 else b"\x00")
            pt = gcm_open(key, nonce, ct, b"")
            if pt is None:
                raise Reject("payload chunk", f"segment {i} chunk {j} does not authenticate")
            out.append(pt)
            pos += len(ct)
    return b"".join(out), pos


def step12_padding(blob, keys, man, pos):
    """Step 12, layer `padding`: the padding is the CTR keystream."""
    pad = blob[pos:pos + man["padding"]]
    if not hmac.compare_digest(pad, ctr_keystream(keys["padding"], man["padding"])):
        raise Reject("padding", "padding differs from the keystream")


def pin_of(header, manifest, footer):
    return hashlib.sha256(b"holdfast/v1/pin" + header + manifest + footer).digest()


def read_object(blob, ctx, catalog=None):
    """Full read: steps 1-12 in order. Returns (manifest, plaintext, pin)."""
    t = step1_size(blob)
    header = step2_header(blob)
    step3_pin(blob, catalog)
    dek = step4_key_unwrap(header, ctx)
    step4a_key_unwrap_nonzero(dek)
    keys = step5_key_commitment(header, dek)
    offset, length = step6_footer(blob, header, keys)
    step7_size_manifest_position(t, offset, length)
    man = step8_manifest(blob, header, keys, offset, length)
    step9_identity(man, ctx)
    step10_size_rule(t, man, offset, length)
    plaintext, pos = step11_payload_chunk(blob, dek, man)
    step12_padding(blob, keys, man, pos)
    pin = pin_of(header["bytes"], blob[offset:offset + length], blob[-F:])
    return man, plaintext, pin


# ---------------------------------------------------------------------------
# System objects (format.md "System objects"). A failure of any rule of a
# system object's plaintext is layer `manifest`: the spec says so for kinds
# 2 and 3, and kind 4 follows them (see README).

SYSTEM_LAYER = "manifest"
KEY_SOURCES = (1, 2, 3)  # 1 keyring, 2 PKCS#11, 3 key server
WRAPPED_LENGTH = {1: 112, 2: 60}  # by wrap algorithm
BACKUP_KEY_STATES = {1: "active", 2: "decrypt-only", 3: "destroyed"}
BACKUP_SYSTEM_KINDS = (KIND_JOURNAL, KIND_MARKER)
BACKUP_SEQUENCE_AT = 1 + 16  # after backup version and repo id


def read_system_plaintext(man, plaintext, ctx):
    """After step 12: decode a system object's plaintext by its kind."""
    if man["kind"] == KIND_JOURNAL:
        return parse_journal_entry(plaintext)
    if man["kind"] == KIND_CATALOG_BACKUP:
        backup = parse_catalog_backup(plaintext)
        check_backup_identity(backup, man)
        return backup
    if man["kind"] == KIND_MARKER:
        return parse_marker(plaintext, man, ctx.store_name)
    if man["kind"] == KIND_AUDIT_CHECKPOINT:
        return parse_audit_checkpoint(plaintext, man)
    return None


def read_limited_str(r, what, limit):
    """A `str` of at most `limit` UTF-8 bytes."""
    value = r.str(what)
    if len(value.encode()) > limit:
        raise Reject(r.layer, f"{what} longer than {limit} bytes")
    return value


def read_nonzero_u32(r, what):
    value = r.u32(what)
    if value == 0:
        raise Reject(r.layer, f"{what} 0")
    return value


def read_source(r, what):
    source = r.u8(what)
    if source not in KEY_SOURCES:
        raise Reject(r.layer, f"{what} {source} is not 1-3")
    return source


def read_alg(r, what):
    alg = r.u8(what)
    if alg not in WRAPPED_LENGTH:
        raise Reject(r.layer, f"{what} {alg} is not 1 or 2")
    return alg


def read_wrapped(r, what, length):
    """`u16 length || bytes`, the length fixed by the algorithm."""
    n = r.u16(what + " length")
    if n != length:
        raise Reject(r.layer, f"{what} length {n}, want {length}")
    return r.take(n, what)


def check_strictly_increasing(entries, sort_key, what):
    """The list is in the stated order with no duplicates."""
    for i in range(1, len(entries)):
        a, b = sort_key(entries[i - 1]), sort_key(entries[i])
        if b == a:
            raise Reject(SYSTEM_LAYER, f"{what} {i} duplicates {what} {i - 1}")
        if b < a:
            raise Reject(SYSTEM_LAYER, f"{what} {i} out of order (not after {what} {i - 1})")


# Key journal entry (kind 2)


BATCH_MIN_RECORD = 150  # u16 length + the shortest key record


def parse_journal_entry(p):
    """Kind 2: one key record, or a batch of type-2 records (version 0x02)."""
    if not p or p[0] != 0x02:
        return parse_key_record(p)
    r = Reader(p, SYSTEM_LAYER)
    r.u8("batch version")
    count = r.u32("count")
    if count < 1 or count > 65535:
        raise Reject(SYSTEM_LAYER, f"batch of {count} records")
    if count * BATCH_MIN_RECORD > len(p) - 5:
        raise Reject(SYSTEM_LAYER, f"batch of {count} records in {len(p) - 5} bytes")
    recs = []
    for i in range(count):
        n = r.u16(f"record {i} length")
        rec = parse_key_record(r.take(n, f"record {i}"))
        if rec["type"] != 2:
            raise Reject(SYSTEM_LAYER, f"batch record {i} is of type {rec['type']}")
        if recs:
            first = recs[0]
            if (rec["bucket_id"], rec["bucket"], rec["key_version"]) != (first["bucket_id"], first["bucket"], first["key_version"]):
                raise Reject(SYSTEM_LAYER, f"batch record {i} names another bucket or key version")
            if rec["object_id"] <= recs[-1]["object_id"]:
                raise Reject(SYSTEM_LAYER, f"batch record {i} not after record {i - 1}")
        recs.append(rec)
    r.end()
    return {"batch": recs}


def parse_key_record(p):
    """One key record; "every field is checked" (layer `manifest`)."""
    r = Reader(p, SYSTEM_LAYER)
    rec = {}
    version = r.u8("record version")
    if version != 0x01:
        raise Reject(SYSTEM_LAYER, f"record version {version}")
    rec["type"] = r.u8("record type")
    if rec["type"] not in (1, 2):
        raise Reject(SYSTEM_LAYER, f"unknown record type {rec['type']}")
    rec["bucket_id"] = r.take(16, "bucket id")
    rec["bucket"] = read_limited_str(r, "bucket", MAX_BUCKET_NAME)
    rec["key_version"] = read_nonzero_u32(r, "key version")
    rec["object_id"] = r.take(16, "object id")
    if rec["type"] == 1 and rec["object_id"] != ZERO_ID:
        raise Reject(SYSTEM_LAYER, "type 1 record with a non-zero object id")
    if rec["type"] == 2 and rec["object_id"] == ZERO_ID:
        raise Reject(SYSTEM_LAYER, "type 2 record with a zero object id")
    rec["source"] = read_source(r, "source")
    rec["alg"] = read_alg(r, "alg")
    if rec["type"] == 2 and rec["alg"] != 1:
        raise Reject(SYSTEM_LAYER, "type 2 record not alg 1 (it is wrapped under a bucket key)")
    rec["kek_version"] = read_nonzero_u32(r, "kek version")
    if rec["type"] == 2 and rec["kek_version"] != rec["key_version"]:
        raise Reject(SYSTEM_LAYER, "type 2 record's kek version is not its key version")
    rec["wrapped"] = read_wrapped(r, "wrapped", WRAPPED_LENGTH[rec["alg"]])
    rec["key_check"] = r.take(32, "key check")
    rec["created"] = r.u64("created")
    r.end()
    return rec


# Catalog backup (kind 3)


def parse_catalog_backup(p):
    """Kind 3: every rule of "Catalog backup (kind 3)" (layer `manifest`).

    Every list entry keeps its byte span `at` (and a key its `state_at`)
    so that the self-test can break one rule in place.
    """
    r = Reader(p, SYSTEM_LAYER)
    backup = {}
    version = r.u8("backup version")
    if version not in (0x01, 0x02):
        raise Reject(SYSTEM_LAYER, f"backup version {version}")
    backup["version"] = version
    backup["repo_id"] = r.take(16, "repo id")
    backup["sequence"] = r.u64("sequence")
    if backup["sequence"] < 1:
        raise Reject(SYSTEM_LAYER, "sequence 0")
    backup["created"] = r.u64("created")
    backup["previous"] = r.take(32, "previous")
    check_backup_previous(backup)
    backup["buckets"] = parse_backup_buckets(r)
    backup["keys"] = parse_backup_keys(r)
    backup["objects"] = parse_backup_objects(r)
    backup["system"] = parse_backup_system_objects(r)
    backup["reservations"] = parse_backup_reservations(r) if version >= 0x02 else []
    r.end()
    backup["hash"] = backup_hash(p)
    return backup


def check_backup_previous(backup):
    """`previous` is zero for sequence 1 and (a hash) not zero after it."""
    zero = backup["previous"] == bytes(32)
    if backup["sequence"] == 1 and not zero:
        raise Reject(SYSTEM_LAYER, "sequence 1 with a non-zero previous hash")
    if backup["sequence"] > 1 and zero:
        raise Reject(SYSTEM_LAYER, f"sequence {backup['sequence']} with a zero previous hash")


def parse_backup_buckets(r):
    """u32 count; name (<= 63 bytes, strictly increasing), id, created."""
    buckets = []
    for i in range(r.u32("bucket count")):
        start = r.pos
        bucket = {
            "name": read_limited_str(r, f"bucket {i} name", MAX_BUCKET_NAME),
            "bucket_id": r.take(16, f"bucket {i} id"),
            "created": r.u64(f"bucket {i} created"),
        }
        bucket["at"] = (start, r.pos)
        buckets.append(bucket)
    check_strictly_increasing(buckets, lambda b: b["name"].encode(), "bucket")
    return buckets


def parse_backup_keys(r):
    """u32 count; ordered by (bucket id bytes, version), no duplicates."""
    keys = [parse_backup_key(r, i) for i in range(r.u32("key count"))]
    check_strictly_increasing(keys, lambda k: (k["bucket_id"], k["version"]), "key")
    return keys


def parse_backup_key(r, i):
    what = f"key {i}"
    start = r.pos
    key = {"bucket_id": r.take(16, f"{what} bucket id")}
    key["version"] = read_nonzero_u32(r, f"{what} version")
    key["source"] = read_source(r, f"{what} source")
    key["alg"] = read_alg(r, f"{what} alg")
    key["kek_version"] = read_nonzero_u32(r, f"{what} kek version")
    key["wrapped"] = read_wrapped(r, f"{what} wrapped", WRAPPED_LENGTH[key["alg"]])
    key["key_check"] = r.take(32, f"{what} key check")
    key["created"] = r.u64(f"{what} created")
    key["state_at"] = r.pos
    state = r.u8(f"{what} state")
    if state not in BACKUP_KEY_STATES:
        raise Reject(SYSTEM_LAYER, f"{what} state {state} is not 1-3")
    key["state"] = BACKUP_KEY_STATES[state]
    key["journal_id"] = r.take(16, f"{what} journal id")
    key["at"] = (start, r.pos)
    return key


def parse_backup_objects(r):
    """u64 count; ordered by (bucket, key) bytes, no duplicates."""
    objects = [parse_backup_object(r, i) for i in range(r.u64("object count"))]
    check_strictly_increasing(objects, lambda o: (o["bucket"].encode(), o["key"].encode()), "object")
    return objects


def parse_backup_object(r, i):
    """One object version; the manifest's rules for bucket, key, content
    type and metadata apply."""
    what = f"object {i}"
    start = r.pos
    obj = {
        "bucket": read_limited_str(r, f"{what} bucket", MAX_BUCKET_NAME),
        "key": read_limited_str(r, f"{what} key", MAX_KEY),
    }
    obj["version"] = r.u64(f"{what} version")
    if obj["version"] < 1:
        raise Reject(SYSTEM_LAYER, f"{what} version 0")
    obj["object_id"] = r.take(16, f"{what} object id")
    obj["size"] = r.u64(f"{what} size")
    obj["stored_length"] = r.u64(f"{what} stored length")
    obj["manifest_offset"] = r.u64(f"{what} manifest offset")
    obj["manifest_length"] = r.u64(f"{what} manifest length")
    obj["pin"] = r.take(32, f"{what} pin")
    obj["commitment"] = r.take(32, f"{what} commitment")
    obj["key_version"] = read_nonzero_u32(r, f"{what} key version")
    obj["wrapped"] = read_wrapped(r, f"{what} wrapped", WRAPPED_LENGTH[1])
    obj["modified"] = r.u64(f"{what} modified")
    obj["content_type"] = read_limited_str(r, f"{what} content type", MAX_CONTENT_TYPE)
    obj["meta"] = parse_manifest_meta(r)
    obj["segments"] = read_nonzero_u32(r, f"{what} segments")
    obj["at"] = (start, r.pos)
    return obj


def parse_backup_reservations(r):
    """Version 2: u64 count; bucket, key (the manifest's limits), version
    >= 1; ordered by (bucket, key) bytes, no duplicates."""
    reservations = []
    for i in range(r.u64("reservation count")):
        what = f"reservation {i}"
        start = r.pos
        res = {
            "bucket": read_limited_str(r, f"{what} bucket", MAX_BUCKET_NAME),
            "key": read_limited_str(r, f"{what} key", MAX_KEY),
            "version": r.u64(f"{what} version"),
        }
        if res["version"] < 1:
            raise Reject(SYSTEM_LAYER, f"{what} version 0")
        res["at"] = (start, r.pos)
        reservations.append(res)
    check_strictly_increasing(reservations, lambda x: (x["bucket"].encode(), x["key"].encode()), "reservation")
    return reservations


def parse_backup_system_objects(r):
    """u32 count; ordered by object id bytes, strictly increasing."""
    system = [parse_backup_system_object(r, i) for i in range(r.u32("system count"))]
    check_strictly_increasing(system, lambda s: s["object_id"], "system object")
    return system


def parse_backup_system_object(r, i):
    what = f"system object {i}"
    start = r.pos
    obj = {"object_id": r.take(16, f"{what} object id")}
    obj["kind"] = r.u8(f"{what} kind")
    if obj["kind"] not in BACKUP_SYSTEM_KINDS:
        raise Reject(SYSTEM_LAYER, f"{what} kind {obj['kind']} is not 2 or 4")
    obj["pin"] = r.take(32, f"{what} pin")
    obj["stored_length"] = r.u64(f"{what} stored length")
    obj["manifest_offset"] = r.u64(f"{what} manifest offset")
    obj["manifest_length"] = r.u64(f"{what} manifest length")
    obj["created"] = r.u64(f"{what} created")
    obj["at"] = (start, r.pos)
    return obj


def check_backup_identity(backup, man):
    """The backup's repo id is the manifest's (see README: not stated)."""
    if backup["repo_id"] != man["repo_id"]:
        raise Reject(SYSTEM_LAYER, "backup repo id differs from the manifest's")


def backup_hash(p):
    """SHA-256("holdfast/v1/backup" || plaintext)."""
    return hashlib.sha256(b"holdfast/v1/backup" + p).digest()


# Repository marker (kind 4)


def parse_marker(p, man, store_name):
    """Kind 4: version, repo id (= name's and manifest's), created."""
    r = Reader(p, SYSTEM_LAYER)
    version = r.u8("marker version")
    if version != 0x01:
        raise Reject(SYSTEM_LAYER, f"marker version {version}")
    repo_id = r.take(16, "repo id")
    created = r.u64("created")
    r.end()
    if repo_id != man["repo_id"]:
        raise Reject(SYSTEM_LAYER, "marker repo id differs from the manifest's")
    if store_name != MARKER_PREFIX + repo_id.hex():
        raise Reject(SYSTEM_LAYER, "marker repo id differs from the store name's")
    return {"repo_id": repo_id, "created": created}


# Audit checkpoint (kind 5)


def parse_audit_checkpoint(p, man):
    """Kind 5: version, repo id (= the manifest's), the line (u16 length).

    The line is 1 to 4096 bytes with no newline byte; its contents are the
    audit log's business, not the format's.
    """
    r = Reader(p, SYSTEM_LAYER)
    version = r.u8("audit checkpoint version")
    if version != 0x01:
        raise Reject(SYSTEM_LAYER, f"audit checkpoint version {version}")
    repo_id = r.take(16, "repo id")
    n = r.u16("line length")
    line = r.take(n, "line")
    r.end()
    if not 1 <= n <= MAX_CHECKPOINT_LINE:
        raise Reject(SYSTEM_LAYER, f"audit checkpoint line of {n} bytes")
    if b"\n" in line:
        raise Reject(SYSTEM_LAYER, "audit checkpoint line holds a newline")
    if repo_id != man["repo_id"]:
        raise Reject(SYSTEM_LAYER, "audit checkpoint repo id differs from the manifest's")
    return {"repo_id": repo_id, "line": line}


# ---------------------------------------------------------------------------
# Object vectors


def case_context(case):
    ctx = ReadContext(
        wrapping_key=bytes.fromhex(case["kek"]),
        kek_version=case["kek_version"],
        purpose=case["purpose"],
        repo_id=bytes.fromhex(case["repo"]),
        bucket_id=bytes.fromhex(case["bucket_id"]),
        store_name=case["store_name"],
    )
    if ctx.object_id.hex() != case["object_id"]:
        raise AssertionError(
            f"index object_id {case['object_id']} is not the store name's {ctx.object_id.hex()}"
        )
    return ctx


def read_case_object(case, directory):
    with open(os.path.join(directory, case["file"]), "rb") as f:
        blob = f.read()
    ctx = case_context(case)
    man, plaintext, pin = read_object(blob, ctx)
    return blob, ctx, man, plaintext, pin


def check_object_vector(case, directory):
    """Returns a note for the ok line (the backup hash of a kind-3 object)."""
    try:
        blob, ctx, man, plaintext, pin = read_case_object(case, directory)
        system = read_system_plaintext(man, plaintext, ctx)
    except Reject as e:
        if case["expect"] == "reject":
            if e.layer == case["layer"]:
                return None
            raise AssertionError(f"rejected at layer {e.layer!r} ({e.reason}), want {case['layer']!r}")
        raise AssertionError(f"rejected: {e}")
    if case["expect"] != "ok":
        raise AssertionError(f"accepted, want rejection at layer {case['layer']!r}")
    compare_object_expectations(case, man, plaintext, pin, len(blob))
    if man["kind"] == KIND_JOURNAL and "batch" in system:
        return f"batch of {len(system['batch'])} data key rewraps"
    if man["kind"] == KIND_JOURNAL and system["type"] == 1 and system["bucket_id"] == ZERO_ID:
        raise AssertionError("bucket key record with a zero bucket id")
    if man["kind"] == KIND_CATALOG_BACKUP:
        return f"sequence {system['sequence']}, backup hash {system['hash'].hex()}"
    if man["kind"] == KIND_AUDIT_CHECKPOINT:
        return f"audit checkpoint line of {len(system['line'])} bytes"
    return None


def compare_object_expectations(case, man, plaintext, pin, stored_length):
    problems = []

    def want(field, got, default=None):
        exp = case.get(field, default)
        if exp is not None and exp != got:
            problems.append(f"{field}: got {got!r}, want {exp!r}")

    want("plaintext_sha256", hashlib.sha256(plaintext).hexdigest())
    want("kind", man["kind"])
    # Fields the index leaves out are taken to be empty (see README).
    want("bucket", man["bucket"], "")
    want("key", man["key"], "")
    want("object_version", man["object_version"])
    want("modified", man["modified"])
    want("content_type", man["content_type"], "")
    want("meta", man["meta"], {})
    want("length", man["length"], sum(case.get("segments", [])))
    want("segments", [n for n, _ in man["segments"]])
    want("stored_length", stored_length)
    want("padding", man["padding"])
    want("pin", pin.hex())
    if len(plaintext) != man["length"]:
        problems.append(f"plaintext is {len(plaintext)} bytes, manifest says {man['length']}")
    if problems:
        raise AssertionError("; ".join(problems))


# ---------------------------------------------------------------------------
# Keyring (format-keyring.md)

KR_MAGIC = b"HFKEYRNG"
KR_HEADER = 63
KR_CHECKSUM = 32
KR_MIN_FILE = 111  # header + tag + checksum
KR_MAX_FILE = 1 << 20
KR_MAX_ENTRIES = 16384
TIME_LIMIT = 1 << 63
KR_STATES = {1: "active", 2: "decrypt-only", 3: "destroyed"}


class KdfBounds:
    """Parameter bounds; the floor is lowered for the test vectors."""

    def __init__(self, t_min, m_min, p_min):
        self.t_min, self.m_min, self.p_min = t_min, m_min, p_min
        self.t_max, self.m_max, self.p_max = 64, 4194304, 64


PRODUCTION_BOUNDS = KdfBounds(t_min=1, m_min=65536, p_min=1)
TEST_BOUNDS = KdfBounds(t_min=1, m_min=64, p_min=1)


class KeyringError(Exception):
    """`error` is the error class (corrupt, unsupported, ...), `layer` the step."""

    def __init__(self, error, layer, reason):
        super().__init__(f"{error} at {layer}: {reason}")
        self.error, self.layer, self.reason = error, layer, reason


def kr_step1_header_magic(data):
    """Step 1, layer `header`: at least 9 bytes, starts with the magic."""
    if len(data) < 9 or data[:8] != KR_MAGIC:
        raise KeyringError("corrupt", "header", "no keyring magic")


def kr_step2_header_version(data):
    """Step 2, layer `header`: format version 1."""
    if data[8] != 0x01:
        raise KeyringError("unsupported", "header", f"format version {data[8]}")


def kr_step3_header_length(data):
    """Step 3, layer `header`: 111 <= length <= 1 MiB."""
    if not KR_MIN_FILE <= len(data) <= KR_MAX_FILE:
        raise KeyringError("corrupt", "header", f"file length {len(data)}")


def kr_step4_checksum(data):
    """Step 4, layer `checksum`: SHA-256 of everything before the last 32 bytes."""
    want = hashlib.sha256(data[:-KR_CHECKSUM]).digest()
    if not hmac.compare_digest(want, data[-KR_CHECKSUM:]):
        raise KeyringError("corrupt", "checksum", "checksum differs")


def kr_step5_kdf_id(data):
    """Step 5, layer `kdf`: KDF id 1 (Argon2id)."""
    if data[9] != 0x01:
        raise KeyringError("unsupported", "kdf", f"KDF id {data[9]}")


def kr_step6_kdf_bounds(data, bounds):
    """Step 6, layer `kdf`: t, m, p within the bounds, before deriving.

    Ceilings are checked before floors and the m >= 8p rule (see README).
    """
    t, m, p = struct.unpack(">IIB", data[10:19])
    for name, value, ceiling in (("t", t, bounds.t_max), ("m", m, bounds.m_max), ("p", p, bounds.p_max)):
        if value > ceiling:
            raise KeyringError("kdf-too-costly", "kdf", f"{name} = {value} > {ceiling}")
    for name, value, floor in (("t", t, bounds.t_min), ("m", m, bounds.m_min), ("p", p, bounds.p_min)):
        if value < floor:
            raise KeyringError("kdf-too-weak", "kdf", f"{name} = {value} < {floor}")
    if m < 8 * p:
        raise KeyringError("kdf-too-weak", "kdf", f"m = {m} < 8 * p = {8 * p}")
    return t, m, p


def kr_step7_aead(data, passphrase, t, m, p):
    """Step 7, layer `aead`: derive the KEK with Argon2id and open the payload."""
    from argon2.low_level import Type, hash_secret_raw

    header = data[:KR_HEADER]
    salt, nonce = header[19:51], header[51:63]
    kek = hash_secret_raw(
        secret=passphrase, salt=salt, time_cost=t, memory_cost=m,
        parallelism=p, hash_len=32, type=Type.ID, version=0x13,
    )
    payload = gcm_open(kek, nonce, data[KR_HEADER:-KR_CHECKSUM], header)
    if payload is None:
        raise KeyringError("wrong-passphrase", "aead", "GCM open failed")
    return payload


def kr_step8_payload(payload):
    """Step 8, layer `payload`: decode under every rule of "Payload"."""
    r = Reader(payload, "payload")
    try:
        version = r.u8("payload version")
        if version != 0x01:
            raise KeyringError("unsupported", "payload", f"payload version {version}")
        ring = {"repo": r.take(16, "repo id"), "primary": r.u32("primary"), "freshness": None}
        flag = r.u8("fresh flag")
        if flag not in (0, 1):
            raise KeyringError("corrupt", "payload", f"fresh flag {flag}")
        if flag == 1:
            ring["freshness"] = {
                "sequence": r.u64("sequence"),
                "hash": r.take(32, "hash"),
                "time": kr_time(r, "freshness time"),
            }
        count = r.u32("count")
        if not 1 <= count <= KR_MAX_ENTRIES:
            raise KeyringError("corrupt", "payload", f"entry count {count}")
        ring["versions"] = [kr_entry(r, i) for i in range(count)]
        r.end()
    except Reject as e:
        raise KeyringError("corrupt", "payload", e.reason)
    kr_check_versions(ring)
    return ring


def kr_time(r, what):
    value = r.u64(what)
    if value >= TIME_LIMIT:
        raise KeyringError("corrupt", "payload", f"{what} {value} >= 2^63")
    return value


def kr_entry(r, i):
    entry = {"version": r.u32(f"entry {i} version")}
    state = r.u8(f"entry {i} state")
    if state not in KR_STATES:
        raise KeyringError("corrupt", "payload", f"entry {i} state {state}")
    entry["state"] = KR_STATES[state]
    entry["created"] = kr_time(r, f"entry {i} created")
    entry["material"] = r.take(32, f"entry {i} material") if state in (1, 2) else None
    return entry


def kr_check_versions(ring):
    previous = 0
    for e in ring["versions"]:
        if e["version"] <= previous:
            raise KeyringError("corrupt", "payload", f"version {e['version']} after {previous}")
        previous = e["version"]
    primary = [e for e in ring["versions"] if e["version"] == ring["primary"]]
    if not primary:
        raise KeyringError("corrupt", "payload", f"primary {ring['primary']} has no entry")
    if primary[0]["state"] != "active":
        raise KeyringError("corrupt", "payload", f"primary {ring['primary']} is {primary[0]['state']}")


def open_keyring(data, passphrase, bounds):
    """Reading, steps 1-8 in order."""
    kr_step1_header_magic(data)
    kr_step2_header_version(data)
    kr_step3_header_length(data)
    kr_step4_checksum(data)
    kr_step5_kdf_id(data)
    t, m, p = kr_step6_kdf_bounds(data, bounds)
    payload = kr_step7_aead(data, passphrase, t, m, p)
    return kr_step8_payload(payload)


def rfc3339_to_ns(text):
    """'2025-01-01T00:00:00.000000001Z' -> nanoseconds since the epoch."""
    if not text.endswith("Z"):
        raise ValueError(f"time {text!r} is not UTC")
    whole, _, frac = text[:-1].partition(".")
    dt = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    seconds = int(dt.timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


def check_keyring_vector(case, directory):
    with open(os.path.join(directory, case["file"]), "rb") as f:
        data = f.read()
    passphrase = case["passphrase"].encode("utf-8")
    try:
        ring = open_keyring(data, passphrase, TEST_BOUNDS)
    except KeyringError as e:
        if case["expect"] == "ok":
            raise AssertionError(f"rejected: {e}")
        if (e.error, e.layer) != (case["expect"], case["layer"]):
            raise AssertionError(f"rejected as {e.error} at {e.layer} ({e.reason}), "
                                 f"want {case['expect']} at {case['layer']}")
        ring = None
    else:
        if case["expect"] != "ok":
            raise AssertionError(f"opened, want {case['expect']} at {case['layer']}")
        compare_keyring_expectations(case, ring)
    check_production_floor(case, data, passphrase)


def check_production_floor(case, data, passphrase):
    """With the production floor every vector that gets past step 6 at the
    test floor must be refused at step 6 as too weak (format-keyring.md,
    "Test vectors"). Vectors refused at or before step 6 are not re-checked:
    see README for why the above-ceiling ones cannot satisfy that sentence."""
    if case["expect"] not in ("ok", "wrong-passphrase") and case["layer"] != "payload":
        return
    try:
        open_keyring(data, passphrase, PRODUCTION_BOUNDS)
    except KeyringError as e:
        if (e.error, e.layer) == ("kdf-too-weak", "kdf"):
            return
        raise AssertionError(f"with the production floor: {e}, want kdf-too-weak at kdf")
    raise AssertionError("opened with the production floor")


def compare_keyring_expectations(case, ring):
    problems = []
    if ring["repo"].hex() != case["repo"]:
        problems.append(f"repo {ring['repo'].hex()}, want {case['repo']}")
    if ring["primary"] != case["primary"]:
        problems.append(f"primary {ring['primary']}, want {case['primary']}")
    got_versions = ring["versions"]
    want_versions = case["versions"]
    if len(got_versions) != len(want_versions):
        problems.append(f"{len(got_versions)} versions, want {len(want_versions)}")
    for got, want in zip(got_versions, want_versions):
        v = want["version"]
        if got["version"] != v:
            problems.append(f"version {got['version']}, want {v}")
        if got["state"] != want["state"]:
            problems.append(f"version {v} state {got['state']}, want {want['state']}")
        if got["created"] != rfc3339_to_ns(want["created"]):
            problems.append(f"version {v} created {got['created']}, want {want['created']}")
        if got["material"] is None:
            if "key_check" in want:
                problems.append(f"version {v} has no material, want key_check")
        else:
            kcv = hkdf(got["material"], b"", b"holdfast/v1/key-check", 32).hex()
            if kcv != want.get("key_check"):
                problems.append(f"version {v} key_check {kcv}, want {want.get('key_check')}")
    fresh, want_fresh = ring["freshness"], case.get("freshness")
    if (fresh is None) != (want_fresh is None):
        problems.append(f"freshness {fresh}, want {want_fresh}")
    elif fresh is not None:
        if fresh["sequence"] != want_fresh["sequence"]:
            problems.append(f"freshness sequence {fresh['sequence']}, want {want_fresh['sequence']}")
        if fresh["hash"].hex() != want_fresh["hash"]:
            problems.append(f"freshness hash {fresh['hash'].hex()}, want {want_fresh['hash']}")
        if fresh["time"] != rfc3339_to_ns(want_fresh["time"]):
            problems.append(f"freshness time {fresh['time']}, want {want_fresh['time']}")
    if problems:
        raise AssertionError("; ".join(problems))


# ---------------------------------------------------------------------------
# Self-test: the catalog-backup vector's plaintext must be accepted, and each
# rule-breaking mutation of it rejected (layer `manifest`, for that rule).


def catalog_backup_plaintext(index, directory, name="catalog-backup"):
    """(plaintext, manifest) of the positive kind-3 vector `name`, read in full."""
    cases = [c for c in index["cases"] if c["name"] == name]
    if len(cases) != 1:
        raise AssertionError(f"{len(cases)} {name} vectors in the index, want 1")
    _, _, man, plaintext, _ = read_case_object(cases[0], directory)
    if man["kind"] != KIND_CATALOG_BACKUP:
        raise AssertionError(f"{name} vector is kind {man['kind']}")
    return plaintext, man


def splice(p, at, replacement):
    return p[:at] + replacement + p[at + len(replacement):]


def mutate_swap_objects(p, backup):
    """Objects 0 and 1 change places (breaks the (bucket, key) order)."""
    if len(backup["objects"]) < 2:
        raise AssertionError("the vector has fewer than two objects to swap")
    (s0, e0), (s1, e1) = backup["objects"][0]["at"], backup["objects"][1]["at"]
    return p[:s0] + p[s1:e1] + p[e0:s1] + p[s0:e0] + p[e1:]


def mutate_swap_buckets(p, backup):
    """Buckets 0 and 1 change places (breaks the name order)."""
    if len(backup["buckets"]) < 2:
        raise AssertionError("the vector has fewer than two buckets to swap")
    (s0, e0), (s1, e1) = backup["buckets"][0]["at"], backup["buckets"][1]["at"]
    return p[:s0] + p[s1:e1] + p[e0:s1] + p[s0:e0] + p[e1:]


def mutate_duplicate_object(p, backup):
    """Object 1 replaced by a copy of object 0 (a duplicate (bucket, key))."""
    if len(backup["objects"]) < 2:
        raise AssertionError("the vector has fewer than two objects")
    (s0, e0), (s1, e1) = backup["objects"][0]["at"], backup["objects"][1]["at"]
    return p[:s1] + p[s0:e0] + p[e1:]


def mutate_swap_reservations(p, backup):
    """Reservations 0 and 1 change places (breaks the (bucket, key) order)."""
    if len(backup["reservations"]) < 2:
        raise AssertionError("the vector has fewer than two reservations to swap")
    (s0, e0), (s1, e1) = backup["reservations"][0]["at"], backup["reservations"][1]["at"]
    return p[:s0] + p[s1:e1] + p[e0:s1] + p[s0:e0] + p[e1:]


def mutate_duplicate_reservation(p, backup):
    """Reservation 1 replaced by a copy of reservation 0."""
    if len(backup["reservations"]) < 2:
        raise AssertionError("the vector has fewer than two reservations")
    (s0, e0), (s1, e1) = backup["reservations"][0]["at"], backup["reservations"][1]["at"]
    return p[:s1] + p[s0:e0] + p[e1:]


def mutate_reservation_version_zero(p, backup):
    """Reservation 0's version (its last 8 bytes) set to 0."""
    if not backup["reservations"]:
        raise AssertionError("the vector has no reservation")
    return splice(p, backup["reservations"][0]["at"][1] - 8, bytes(8))


def mutate_sequence_zero(p, backup):
    return splice(p, BACKUP_SEQUENCE_AT, bytes(8))


def mutate_trailing_byte(p, backup):
    return p + b"\x00"


def mutate_key_state_9(p, backup):
    if not backup["keys"]:
        raise AssertionError("the vector has no key record")
    return splice(p, backup["keys"][0]["state_at"], b"\x09")


def mutate_system_kind_3(p, backup):
    if not backup["system"]:
        raise AssertionError("the vector has no system object")
    return splice(p, backup["system"][0]["at"][0] + 16, bytes([KIND_CATALOG_BACKUP]))


# (name, mutation, a fragment of the rejection's reason)
SELFTEST_MUTATIONS = [
    ("swap-objects", mutate_swap_objects, "object 1 out of order"),
    ("sequence-0", mutate_sequence_zero, "sequence 0"),
    ("trailing-byte", mutate_trailing_byte, "1 trailing bytes"),
    ("key-state-9", mutate_key_state_9, "key 0 state 9"),
    ("swap-buckets", mutate_swap_buckets, "bucket 1 out of order"),
    ("duplicate-object", mutate_duplicate_object, "object 1 duplicates object 0"),
    ("system-kind-3", mutate_system_kind_3, "system object 0 kind 3"),
]

# Mutations of the version 2 vector (catalog-backup-v2): its reservations.
SELFTEST_MUTATIONS_V2 = [
    ("swap-reservations", mutate_swap_reservations, "reservation 1 out of order"),
    ("duplicate-reservation", mutate_duplicate_reservation, "reservation 1 duplicates reservation 0"),
    ("reservation-version-0", mutate_reservation_version_zero, "reservation 0 version 0"),
]


def decode_backup(p, man):
    backup = parse_catalog_backup(p)
    check_backup_identity(backup, man)
    return backup


def selftest_accepts(p, man):
    backup = decode_backup(p, man)
    return f"backup hash {backup['hash'].hex()}"


def selftest_rejects(p, man, mutate, fragment):
    mutated = mutate(p, decode_backup(p, man))
    if mutated == p:
        raise AssertionError("the mutation changed nothing")
    try:
        decode_backup(mutated, man)
    except Reject as e:
        if e.layer != SYSTEM_LAYER or fragment not in e.reason:
            raise AssertionError(f"rejected as {e}, want {SYSTEM_LAYER}: ...{fragment}...")
        return e.reason
    raise AssertionError("mutated backup accepted")


def run_selftests(index, directory, report):
    try:
        plaintext, man = catalog_backup_plaintext(index, directory)
        unreadable = None
    except Exception as e:  # noqa: BLE001 -- reported by every self-test
        plaintext, man, unreadable = None, None, e

    def with_plaintext(fn, *args):
        if unreadable is not None:
            raise AssertionError(f"catalog-backup vector unusable: {unreadable}")
        return fn(plaintext, man, *args)

    report("selftest/catalog-backup-unmutated", with_plaintext, selftest_accepts)
    for name, mutate, fragment in SELFTEST_MUTATIONS:
        report(f"selftest/catalog-backup-{name}", with_plaintext, selftest_rejects, mutate, fragment)

    try:
        plaintext2, man2 = catalog_backup_plaintext(index, directory, "catalog-backup-v2")
        unreadable2 = None
    except Exception as e:  # noqa: BLE001 -- reported by every self-test
        plaintext2, man2, unreadable2 = None, None, e

    def with_plaintext2(fn, *args):
        if unreadable2 is not None:
            raise AssertionError(f"catalog-backup-v2 vector unusable: {unreadable2}")
        return fn(plaintext2, man2, *args)

    report("selftest/catalog-backup-v2-unmutated", with_plaintext2, selftest_accepts)
    for name, mutate, fragment in SELFTEST_MUTATIONS_V2:
        report(f"selftest/catalog-backup-v2-{name}", with_plaintext2, selftest_rejects, mutate, fragment)


# Mutations of the audit checkpoint vector's plaintext (kind 5):
# (name, mutation, a fragment of the rejection's reason). The line's
# length is at bytes 17-18 and the line follows.
CHECKPOINT_MUTATIONS = [
    ("version-2", lambda p: splice(p, 0, b"\x02"), "audit checkpoint version 2"),
    ("trailing-byte", lambda p: p + b"\x00", "1 trailing bytes"),
    ("cut-short", lambda p: p[:-1], "truncated in line"),
    ("newline-in-line", lambda p: splice(p, len(p) - 1, b"\n"), "holds a newline"),
    ("empty-line", lambda p: p[:17] + b"\x00\x00", "line of 0 bytes"),
    ("another-repo", lambda p: splice(p, 1, bytes([p[1] ^ 1])), "differs from the manifest's"),
]


def run_checkpoint_selftests(index, directory, report):
    def decoded(fn):
        cases = [c for c in index["cases"] if c["name"] == "audit-checkpoint"]
        if len(cases) != 1:
            raise AssertionError(f"{len(cases)} audit-checkpoint vectors in the index, want 1")
        _, _, man, plaintext, _ = read_case_object(cases[0], directory)
        if man["kind"] != KIND_AUDIT_CHECKPOINT:
            raise AssertionError(f"audit-checkpoint vector is kind {man['kind']}")
        return fn(plaintext, man)

    def accepts(p, man):
        return f"line of {len(parse_audit_checkpoint(p, man)['line'])} bytes"

    def rejects(mutate, fragment):
        def run(p, man):
            mutated = mutate(p)
            if mutated == p:
                raise AssertionError("the mutation changed nothing")
            try:
                parse_audit_checkpoint(mutated, man)
            except Reject as e:
                if e.layer != SYSTEM_LAYER or fragment not in e.reason:
                    raise AssertionError(f"rejected as {e}, want {SYSTEM_LAYER}: ...{fragment}...")
                return e.reason
            raise AssertionError("mutated audit checkpoint accepted")
        return run

    report("selftest/audit-checkpoint-unmutated", decoded, accepts)
    for name, mutate, fragment in CHECKPOINT_MUTATIONS:
        report(f"selftest/audit-checkpoint-{name}", decoded, rejects(mutate, fragment))


# ---------------------------------------------------------------------------
# Driver


def run(vectors_dir):
    passed = failed = 0

    def report(name, fn, *args):
        nonlocal passed, failed
        try:
            note = fn(*args)
        except Exception as e:  # noqa: BLE001 -- every failure is reported
            failed += 1
            why = str(e) if isinstance(e, (AssertionError, Reject)) else f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {why}")
        else:
            passed += 1
            print(f"ok {name}: {note}" if note else f"ok {name}")

    obj_dir = os.path.join(vectors_dir, "object")
    index_path = os.path.join(obj_dir, "index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        if index.get("format_version") != 1:
            failed += 1
            print(f"FAIL object/index.json: format_version {index.get('format_version')}")
        for case in index["cases"]:
            report("object/" + case["name"], check_object_vector, case, obj_dir)
        run_selftests(index, obj_dir, report)
        run_checkpoint_selftests(index, obj_dir, report)
    else:
        failed += 1
        print(f"FAIL {index_path}: missing")

    kr_dir = os.path.join(vectors_dir, "keyring")
    kr_path = os.path.join(kr_dir, "keyring-v1-vectors.json")
    if os.path.exists(kr_path):
        with open(kr_path) as f:
            kr = json.load(f)
        for case in kr["vectors"]:
            report("keyring/" + case["name"], check_keyring_vector, case, kr_dir)
    else:
        failed += 1
        print(f"FAIL {kr_path}: missing")

    print(f"pydecode: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


def main(argv):
    if len(argv) != 2:
        print("usage: pydecode.py VECTORS_DIR", file=sys.stderr)
        return 2
    return run(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
