package ledger

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// EventsOrigin is the origin line of the events log's checkpoints (C2SP
// tlog-checkpoint) on the server serverName; it is also the name of the
// log's note key.
func EventsOrigin(serverName string) string {
	return serverName + "/matrixos/ledger/events"
}

// keyLabel is the HKDF info that derives the ledger's key from the node's.
const keyLabel = "matrixos-ledger"

// DeriveKey returns the ledger's signing key for the node's federation
// signing key: an ed25519 key whose seed is HKDF-SHA256 of the node key's
// seed with the label "matrixos-ledger". The ledger signs with it rather
// than with the federation key, so that the federation key never signs
// text that others influence (checkpoints, later witness cosignatures);
// it needs no file of its own and follows a rotation of the node's key.
func DeriveKey(nodeKey ed25519.PrivateKey) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, nodeKey.Seed(), nil, keyLabel, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("derive the ledger key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// noteSigner signs checkpoints with the ledger's ed25519 key.
type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s noteSigner) Name() string                    { return s.name }
func (s noteSigner) KeyHash() uint32                 { return s.hash }
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NewSigner returns the note signer of the log named origin for key, and
// the log's public key in the note verifier key format
// (<name>+<hash>+<base64 key>), which verifiers need.
func NewSigner(origin string, key ed25519.PrivateKey) (note.Signer, string, error) {
	vkey, err := PublicKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key: %w", err)
	}
	return noteSigner{name: origin, hash: v.KeyHash(), key: key}, vkey, nil
}

// PublicKey returns the note verifier key of the log named origin signed
// by pub.
func PublicKey(origin string, pub ed25519.PublicKey) (string, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("ledger key for %q: %w", origin, err)
	}
	return vkey, nil
}
