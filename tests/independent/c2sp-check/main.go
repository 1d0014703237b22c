// Command c2sp-check verifies what a Liên Thông node publishes with code
// this project did not write: Go's own signed-note and transparency-log
// packages, golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, as
// Debian ships them in golang-golang-x-mod-dev (C2SP signed-note grew out of
// the first; tlog is the RFC 6962 code behind sum.golang.org).
//
// What comes from those packages and what is written here:
//
//   - signed note (C2SP signed-note): parsing the note, matching signature
//     lines to keys, deriving and checking the Ed25519 key ID of the vkey,
//     and the Ed25519 check itself are note.NewVerifier and note.Open.
//   - checkpoint body (C2SP tlog-checkpoint): the three lines are read here;
//     x/mod has no parser for other logs' checkpoints (tlog.ParseTree
//     accepts only the Go checksum database's own header). The root hash is
//     decoded by tlog.ParseHash.
//   - cosignature (C2SP tlog-cosignature, cosignature/v1): note.Open parses
//     the line and picks the key by name and key ID; the verifier it calls,
//     which rebuilds "cosignature/v1\ntime <t>\n" || body and checks the
//     Ed25519 signature with Go's crypto/ed25519, is written here from the
//     spec, because x/mod has none.
//   - inclusion proof (RFC 6962 / RFC 9162): the leaf hash of the envelope
//     is tlog.RecordHash and the proof is checked by tlog.CheckRecord.
//
// Build it offline in GOPATH mode against Debian's packages (see
// tests/independent/install.sh):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
//	    go build -o c2sp-check ./tests/independent/c2sp-check
//
// Example:
//
//	c2sp-check -note checkpoint.txt -vkey 'lienthong.example/bac-bo-11/15+1a2b3c4d+AV…' \
//	    -cosigner-vkey 'witness.example/w1+5e6f7a8b+BP…' \
//	    -index 3 -envelope entry-3.bin -proof proof-3.txt
//
// It prints one "ok" line per check and "VERIFIED" at the end, and exits 1
// with "FAILED: <reason>" on standard error as soon as a check fails (2 on
// bad arguments).
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Signature type of Ed25519 cosignature/v1 keys (C2SP signed-note,
// "Signature types"; C2SP tlog-cosignature).
const sigTypeCosignatureV1 = 0x04

// Cosignature/v1 timestamps are at most 2^63-1 (C2SP tlog-cosignature).
const maxCosignatureTime = 1<<63 - 1

func main() {
	notePath := flag.String("note", "", "file holding the signed checkpoint note (required)")
	vkey := flag.String("vkey", "", "the member's verifier key, <name>+<key id hex>+<base64(0x01||public key)> (required)")
	cosigner := flag.String("cosigner-vkey", "", "a witness's cosignature/v1 key, <name>+<key id hex>+<base64(0x04||public key)>; its cosignature must be on the note")
	index := flag.Int64("index", -1, "index of the entry whose inclusion is proved")
	envelopePath := flag.String("envelope", "", "file holding the entry's envelope bytes (the leaf is SHA-256(0x00 || envelope))")
	leafHex := flag.String("leaf-hash", "", "the entry's leaf hash in hex, instead of or as well as -envelope")
	proofPath := flag.String("proof", "", "file holding the inclusion proof: one 32-byte hash in hex per line, nearest the leaf first")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: c2sp-check -note FILE -vkey VKEY [-cosigner-vkey VKEY] [-index N (-envelope FILE | -leaf-hash HEX) -proof FILE]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	if *notePath == "" || *vkey == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	inclusion := *index >= 0 || *envelopePath != "" || *leafHex != "" || *proofPath != ""
	if inclusion && (*index < 0 || *proofPath == "" || (*envelopePath == "" && *leafHex == "")) {
		fmt.Fprintln(os.Stderr, "an inclusion check needs -index, -proof and -envelope or -leaf-hash")
		os.Exit(2)
	}

	msg, err := os.ReadFile(*notePath)
	if err != nil {
		fail("reading the note: %v", err)
	}

	cp := checkCheckpoint(msg, *vkey)
	if *cosigner != "" {
		checkCosignature(msg, *cosigner)
	}
	if inclusion {
		checkInclusion(cp, *index, *envelopePath, *leafHex, *proofPath)
	}
	fmt.Println("VERIFIED")
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAILED: "+format+"\n", args...)
	os.Exit(1)
}

// checkpoint is a parsed C2SP tlog-checkpoint body.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// checkCheckpoint opens the note with the member's key alone and parses its
// text as a checkpoint whose origin is the key's name.
func checkCheckpoint(msg []byte, vkey string) checkpoint {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		fail("the member vkey %q is not a valid Ed25519 note verifier key: %v", vkey, err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fail("the checkpoint note does not verify with %s+%08x: %s", v.Name(), v.KeyHash(), describe(err))
	}
	fmt.Printf("ok signed-note: signature by %s+%08x verifies (Go x/mod sumdb/note)\n", v.Name(), v.KeyHash())

	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("the note text is not a C2SP tlog-checkpoint: %v", err)
	}
	if cp.origin != v.Name() {
		fail("checkpoint origin %q differs from the key name %q", cp.origin, v.Name())
	}
	fmt.Printf("ok tlog-checkpoint: origin %s, size %d, root %s\n", cp.origin, cp.size, cp.root)
	return cp
}

// parseCheckpoint reads origin, tree size and root hash, the three lines a
// C2SP tlog-checkpoint body starts with; extension lines may follow.
func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.Split(text, "\n")
	// note.Open guarantees the text ends in a newline, so the last element is empty.
	lines = lines[:len(lines)-1]
	if len(lines) < 3 {
		return checkpoint{}, fmt.Errorf("%d lines, need origin, size and root hash", len(lines))
	}
	if lines[0] == "" {
		return checkpoint{}, errors.New("empty origin line")
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return checkpoint{}, errors.New("empty extension line")
		}
	}
	sizeText := lines[1]
	if sizeText == "" || (len(sizeText) > 1 && sizeText[0] == '0') || strings.TrimLeft(sizeText, "0123456789") != "" {
		return checkpoint{}, fmt.Errorf("tree size %q is not a decimal number without leading zeros", sizeText)
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil {
		return checkpoint{}, fmt.Errorf("tree size %q: %v", sizeText, err)
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("root hash %q is not base64 of 32 bytes", lines[2])
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// cosignatureV1 is a note.Verifier for one witness's cosignature/v1 key.
type cosignatureV1 struct {
	name string
	id   uint32
	key  ed25519.PublicKey
	time uint64 // the timestamp of the signature that verified
}

func (c *cosignatureV1) Name() string    { return c.name }
func (c *cosignatureV1) KeyHash() uint32 { return c.id }

// Verify checks a cosignature/v1 payload, timestamp (8 bytes, big-endian)
// followed by an Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" || checkpoint body.
func (c *cosignatureV1) Verify(body, payload []byte) bool {
	if len(payload) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(payload[:8])
	if t > maxCosignatureTime {
		return false
	}
	var signed bytes.Buffer
	fmt.Fprintf(&signed, "cosignature/v1\ntime %d\n", t)
	signed.Write(body)
	if !ed25519.Verify(c.key, signed.Bytes(), payload[8:]) {
		return false
	}
	c.time = t
	return true
}

// parseCosignerVkey reads <name>+<key id hex>+<base64(0x04 || public key)>
// and checks the key ID: the first 4 bytes of
// SHA-256(name || 0x0A || 0x04 || public key).
func parseCosignerVkey(vkey string) (*cosignatureV1, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || parts[0] == "" || len(parts[1]) != 8 {
		return nil, errors.New("want <name>+<8 hex digits>+<base64 key>")
	}
	id, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("key ID %q is not hex", parts[1])
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("the key is not standard base64")
	}
	if len(key) != 1+ed25519.PublicKeySize || key[0] != sigTypeCosignatureV1 {
		return nil, fmt.Errorf("the key is not 0x04 followed by a 32-byte Ed25519 public key")
	}
	h := sha256.New()
	h.Write([]byte(parts[0]))
	h.Write([]byte{'\n'})
	h.Write(key)
	if want := binary.BigEndian.Uint32(h.Sum(nil)); uint32(id) != want {
		return nil, fmt.Errorf("key ID %08x does not match the key (expected %08x)", id, want)
	}
	return &cosignatureV1{name: parts[0], id: uint32(id), key: ed25519.PublicKey(key[1:])}, nil
}

// checkCosignature opens the note again with the witness's key alone, so the
// member's own line is left unverified and only the cosignature counts.
func checkCosignature(msg []byte, vkey string) {
	c, err := parseCosignerVkey(vkey)
	if err != nil {
		fail("the cosigner vkey %q is not a cosignature/v1 key: %v", vkey, err)
	}
	if _, err := note.Open(msg, note.VerifierList(c)); err != nil {
		fail("the cosignature by %s+%08x does not verify: %s", c.name, c.id, describe(err))
	}
	fmt.Printf("ok tlog-cosignature: cosignature/v1 by %s+%08x at time %d verifies (line parsed by Go x/mod sumdb/note)\n", c.name, c.id, c.time)
}

// checkInclusion proves that the entry is leaf `index` of the checkpoint's tree.
func checkInclusion(cp checkpoint, index int64, envelopePath, leafHex, proofPath string) {
	var leaf tlog.Hash
	haveLeaf := false
	if envelopePath != "" {
		env, err := os.ReadFile(envelopePath)
		if err != nil {
			fail("reading the envelope: %v", err)
		}
		leaf = tlog.RecordHash(env)
		haveLeaf = true
	}
	if leafHex != "" {
		h, err := parseHexHash(leafHex)
		if err != nil {
			fail("the leaf hash: %v", err)
		}
		if haveLeaf && h != leaf {
			fail("the leaf hash %x is not SHA-256(0x00 || envelope) = %x", h[:], leaf[:])
		}
		leaf = h
	}

	text, err := os.ReadFile(proofPath)
	if err != nil {
		fail("reading the proof: %v", err)
	}
	var proof tlog.RecordProof
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		h, err := parseHexHash(line)
		if err != nil {
			fail("proof line %d: %v", i+1, err)
		}
		proof = append(proof, h)
	}

	if index >= cp.size {
		fail("index %d is not in a tree of size %d", index, cp.size)
	}
	if err := tlog.CheckRecord(proof, cp.size, cp.root, index, leaf); err != nil {
		fail("inclusion proof of leaf %d (%x) in the tree of size %d does not lead to the checkpoint's root: %v", index, leaf[:], cp.size, err)
	}
	fmt.Printf("ok inclusion: leaf %d (%x) is in the tree of size %d, %d proof hashes (Go x/mod sumdb/tlog)\n", index, leaf[:], cp.size, len(proof))
}

func parseHexHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("%q is not 32 bytes of hex", s)
	}
	copy(h[:], b)
	return h, nil
}

// describe turns note.Open's errors into what an auditor should look at.
func describe(err error) string {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return "no signature line by this key (wrong key, or the note is signed by someone else)"
	case errors.As(err, &invalid):
		return "the signature line by this key is there but wrong (the text was altered, or the signature is damaged)"
	default:
		return err.Error()
	}
}
