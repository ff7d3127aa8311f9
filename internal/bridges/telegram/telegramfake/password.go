package telegramfake

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// The server side of Telegram's two-step verification (the cloud
// password), as https://core.telegram.org/api/srp describes it: the fake
// keeps only a verifier v = g^x mod p, x derived from the password and two
// salts, and checks the client's SRP proof M1 against it.

// srpPrime is the 2048-bit safe prime p Telegram publishes for its
// Diffie-Hellman exchanges and SRP, with the generator srpG.
var srpPrime, _ = new(big.Int).SetString(
	"C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"+
		"48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"+
		"20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"+
		"2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"+
		"A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"+
		"FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"+
		"E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"+
		"0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B", 16)

const srpG = 3

// cloudPassword is what the fake keeps of a user's password: the salts
// and the verifier, never the password itself.
type cloudPassword struct {
	salt1, salt2 []byte
	verifier     *big.Int
}

// srpSession is one account.getPassword answer waiting for its
// auth.checkPassword: the server's secret b and public B.
type srpSession struct {
	user int64
	b    *big.Int
	gb   []byte
}

// SetPassword gives a user a two-step verification password: sign-in then
// needs it after the code (SESSION_PASSWORD_NEEDED).
func (s *Server) SetPassword(user int64, password string) {
	salt1, salt2 := randomBytes(40), randomBytes(16)
	x := new(big.Int).SetBytes(passwordHash2([]byte(password), salt1, salt2))
	v := new(big.Int).Exp(big.NewInt(srpG), x, srpPrime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passwords[user] = &cloudPassword{salt1: salt1, salt2: salt2, verifier: v}
}

// PasswordChecks is how many auth.checkPassword calls for a user the fake
// answered, and how many of them it refused.
func (s *Server) PasswordChecks(user int64) (checked, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passwordChecks[user], s.passwordRefusals[user]
}

// getPassword starts an SRP exchange for the account waiting for its
// password on this session: B = k*v + g^b mod p with a fresh secret b.
func (s *Server) getPassword(c call) (bin.Encoder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	user := c.user
	if user == 0 {
		user = s.awaitingPassword[c.req.Session.AuthKey.ID]
	}
	pw := s.passwords[user]
	if pw == nil {
		return &tg.AccountPassword{NewAlgo: s.algo(nil), NewSecureAlgo: &tg.SecurePasswordKdfAlgoUnknown{}, SecureRandom: randomBytes(256)}, nil
	}
	b := new(big.Int).SetBytes(randomBytes(256))
	gb := new(big.Int).Exp(big.NewInt(srpG), b, srpPrime)
	kv := new(big.Int).Mul(srpK(), pw.verifier)
	B := pad256(kv.Add(kv, gb).Mod(kv, srpPrime))
	id := int64(binary.BigEndian.Uint64(randomBytes(8)) >> 1)
	s.srp[id] = &srpSession{user: user, b: b, gb: B}
	answer := &tg.AccountPassword{
		HasPassword:   true,
		NewAlgo:       s.algo(nil),
		NewSecureAlgo: &tg.SecurePasswordKdfAlgoUnknown{},
		SecureRandom:  randomBytes(256),
	}
	answer.SetCurrentAlgo(s.algo(pw))
	answer.SetSRPB(B)
	answer.SetSRPID(id)
	return answer, nil
}

// algo is the KDF the password's salts belong to (a new password's,
// with only the server's salts, when pw is nil).
func (s *Server) algo(pw *cloudPassword) *tg.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow {
	algo := &tg.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow{G: srpG, P: pad256(srpPrime)}
	if pw != nil {
		algo.Salt1, algo.Salt2 = pw.salt1, pw.salt2
	}
	return algo
}

// checkPassword checks the client's proof M1 for the exchange its SRP ID
// names (each ID is good for one try): the session is then logged in, and
// a wrong password is PASSWORD_HASH_INVALID.
func (s *Server) checkPassword(c call) (bin.Encoder, error) {
	var r tg.AuthCheckPasswordRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	in, ok := r.Password.(*tg.InputCheckPasswordSRP)
	if !ok {
		return nil, tgerr.New(400, "PASSWORD_HASH_INVALID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exchange := s.srp[in.SRPID]
	delete(s.srp, in.SRPID)
	if exchange == nil || s.awaitingPassword[c.req.Session.AuthKey.ID] != exchange.user {
		return nil, tgerr.New(400, "SRP_ID_INVALID")
	}
	pw := s.passwords[exchange.user]
	s.passwordChecks[exchange.user]++
	if !bytes.Equal(in.M1, expectedM1(pw, exchange, in.A)) {
		s.passwordRefusals[exchange.user]++
		return nil, tgerr.New(400, "PASSWORD_HASH_INVALID")
	}
	delete(s.awaitingPassword, c.req.Session.AuthKey.ID)
	return s.logInLocked(c, exchange.user), nil
}

// expectedM1 is the proof a client that knows the password sends with its
// g_a: M1 = H(H(p) xor H(g) | H(salt1) | H(salt2) | g_a | g_b | H(S)),
// where the server computes S = (g_a * v^u)^b with u = H(g_a | g_b). A g_a
// out of range gets nil, which no proof matches.
func expectedM1(pw *cloudPassword, exchange *srpSession, ga []byte) []byte {
	A := new(big.Int).SetBytes(ga)
	if A.Cmp(big.NewInt(1)) <= 0 || A.Cmp(new(big.Int).Sub(srpPrime, big.NewInt(1))) >= 0 {
		return nil
	}
	gaPadded := pad256(A)
	u := new(big.Int).SetBytes(sha(gaPadded, exchange.gb))
	S := new(big.Int).Exp(pw.verifier, u, srpPrime)
	S.Mul(S, A).Mod(S, srpPrime).Exp(S, exchange.b, srpPrime)
	k := sha(pad256(S))
	hp, hg := sha(pad256(srpPrime)), sha(pad256(big.NewInt(srpG)))
	for i := range hp {
		hp[i] ^= hg[i]
	}
	return sha(hp, sha(pw.salt1), sha(pw.salt2), gaPadded, exchange.gb, k)
}

// srpK is k = H(p | g), the SRP multiplier.
func srpK() *big.Int {
	return new(big.Int).SetBytes(sha(pad256(srpPrime), pad256(big.NewInt(srpG))))
}

// passwordHash2 is PH2(password, salt1, salt2) =
// SH(pbkdf2(sha512, PH1(password, salt1, salt2), salt1, 100000), salt2),
// with PH1 = SH(SH(password, salt1), salt2) and SH(data, salt) =
// H(salt | data | salt).
func passwordHash2(password, salt1, salt2 []byte) []byte {
	ph1 := saltedHash(saltedHash(password, salt1), salt2)
	key, err := pbkdf2.Key(sha512.New, string(ph1), salt1, 100000, 64)
	if err != nil {
		panic(fmt.Sprintf("telegramfake: pbkdf2: %v", err))
	}
	return saltedHash(key, salt2)
}

func saltedHash(data, salt []byte) []byte { return sha(salt, data, salt) }

func sha(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// pad256 is a number as 256 big-endian bytes.
func pad256(n *big.Int) []byte { return n.FillBytes(make([]byte, 256)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("telegramfake: random: %v", err))
	}
	return b
}
