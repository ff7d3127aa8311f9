package ledger

import (
	"crypto/ed25519"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// EventsOrigin is the origin line of the events log's checkpoints (C2SP
// tlog-checkpoint) on the server serverName; it is also the name of the
// log's note key.
func EventsOrigin(serverName string) string {
	return serverName + "/matrixos/ledger/events"
}

// noteSigner signs checkpoints with the node's ed25519 key.
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
