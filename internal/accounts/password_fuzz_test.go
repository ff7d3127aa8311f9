package accounts

import (
	"errors"
	"testing"
)

// FuzzCheckPassword feeds odd stored hashes to CheckPassword: it must never
// panic, must refuse what it cannot parse, and must accept the password a
// well-formed hash was made from.
func FuzzCheckPassword(f *testing.F) {
	good, err := HashPassword("pw")
	if err != nil {
		f.Fatal(err)
	}
	for _, h := range []string{
		good, "", "$", "$argon2id$", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=0,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4294967295,t=4294967295,p=255$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8,t=1,p=1$$", "$argon2id$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8,t=1,p=256$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=-8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8,t=1,p=1x$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$2b$12$abcdefghijklmnopqrstuuKyZq9sQ2K6yR8N2lJ7wzvLQKpPKvvba", // bcrypt
	} {
		f.Add(h, "pw")
	}
	f.Fuzz(func(t *testing.T, hash, password string) {
		a, perr := parseArgon2(hash)
		if perr == nil && uint64(a.m)*uint64(a.t) > 1<<17 {
			t.Skip("parameters too costly for fuzzing")
		}
		ok, err := CheckPassword(hash, password)
		if perr != nil {
			if !errors.Is(err, errBadHash) || ok {
				t.Fatalf("CheckPassword(%q) = %v, %v for an unparsable hash", hash, ok, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("CheckPassword(%q) = %v", hash, err)
		}
		if hash == good && ok != (password == "pw") {
			t.Fatalf("CheckPassword(good, %q) = %v", password, ok)
		}
	})
}
