package accounts

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"

	"golang.org/x/crypto/argon2"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// MaxBulkAccounts bounds how many accounts one CreateUsers call creates.
const MaxBulkAccounts = 10000

// maxBulkHashers bounds the argon2id computations of a CreateUsers call
// running at once, each holding argonMemory (16 of them: 304 MiB).
const maxBulkHashers = 16

// generatedPasswordBytes is the entropy of a generated password (128 bits,
// 22 characters base64url).
const generatedPasswordBytes = 16

// NewAccount is one account for CreateUsers.
type NewAccount struct {
	Localpart string
	// Password is the account's password; empty asks for a generated
	// one when CreateUsers generates, and is refused otherwise.
	Password string
	Admin    bool
}

// CreatedAccount is an account CreateUsers created.
type CreatedAccount struct {
	UserID id.UserID
	Admin  bool
	// Password is set only when it was generated.
	Password string
}

// CreateUsers creates many accounts at once, all of them or none: it
// checks every name first (valid, not repeated, not taken), then hashes
// the passwords with the same argon2id strength as CreateUser, on every
// core at once (at most maxBulkHashers, beside the logins' own slots), and
// stores the accounts in one transaction. With generate, an account
// without a password gets a random one, returned in its CreatedAccount.
// One call runs at a time: a second one meanwhile is refused with 429
// M_LIMIT_EXCEEDED, so that concurrent calls cannot multiply the hash
// workers and their memory.
func (s *Service) CreateUsers(ctx context.Context, accounts []NewAccount, generate bool) ([]CreatedAccount, error) {
	if len(accounts) > MaxBulkAccounts {
		return nil, mxhttp.InvalidParam("at most %d accounts at once, not %d", MaxBulkAccounts, len(accounts))
	}
	if !s.bulkSlot.TryLock() {
		return nil, mxhttp.LimitExceeded("another bulk account creation is running; try again once it ends").With("retry_after_ms", int64(10000))
	}
	defer s.bulkSlot.Unlock()
	created, err := s.checkNewAccounts(ctx, accounts, generate)
	if err != nil {
		return nil, err
	}
	hashes, err := hashPasswords(ctx, created, accounts)
	if err != nil {
		return nil, err
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		for i, c := range created {
			if err := insertUser(ctx, tx, c.UserID, accounts[i].Localpart, hashes[i], c.Admin, ""); err != nil {
				if errors.Is(err, ErrUserExists) {
					return mxhttp.UserInUse("user ID %s already taken", c.UserID)
				}
				return fmt.Errorf("create %s: %w", c.UserID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("users created", "count", len(created))
	return created, nil
}

// checkNewAccounts validates the accounts of a CreateUsers call, naming
// the first bad one, and returns what will be created, generated
// passwords included.
func (s *Service) checkNewAccounts(ctx context.Context, accounts []NewAccount, generate bool) ([]CreatedAccount, error) {
	created := make([]CreatedAccount, len(accounts))
	seen := make(map[string]bool, len(accounts))
	for i, a := range accounts {
		if err := s.ValidateLocalpart(a.Localpart); err != nil {
			return nil, naming(a.Localpart, err)
		}
		if seen[a.Localpart] {
			return nil, mxhttp.InvalidParam("%q is named twice", a.Localpart)
		}
		seen[a.Localpart] = true
		if err := CheckPasswordLength(a.Password); err != nil {
			return nil, naming(a.Localpart, err)
		}
		created[i] = CreatedAccount{UserID: s.UserID(a.Localpart), Admin: a.Admin}
		if a.Password == "" {
			if !generate {
				return nil, mxhttp.InvalidParam("%q has no password (ask for generated ones)", a.Localpart)
			}
			created[i].Password = RandomToken("", generatedPasswordBytes)
		}
		_, taken, err := s.GetUser(ctx, created[i].UserID)
		if err != nil {
			return nil, err
		}
		if taken {
			return nil, mxhttp.UserInUse("user ID %s already taken", created[i].UserID)
		}
	}
	return created, nil
}

// naming puts the localpart an error is about in front of its message, a
// Matrix error's included.
func naming(localpart string, err error) error {
	if e, ok := mxhttp.AsError(err); ok {
		named := *e
		named.Message = fmt.Sprintf("%q: %s", localpart, e.Message)
		return &named
	}
	return fmt.Errorf("%q: %w", localpart, err)
}

// hashPasswords hashes each account's password (the generated one where
// created holds it) on a bounded pool of one worker per core.
func hashPasswords(ctx context.Context, created []CreatedAccount, accounts []NewAccount) ([]string, error) {
	hashes := make([]string, len(created))
	errs := make([]error, len(created))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), maxBulkHashers, len(created)) {
		wg.Go(func() {
			for i := range next {
				pw := accounts[i].Password
				if created[i].Password != "" {
					pw = created[i].Password
				}
				hashes[i], errs[i] = bulkHash(pw)
			}
		})
	}
feed:
	for i := range created {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	// Hand the hashes' memory straight back, as argonKey does after a
	// burst of logins.
	debug.FreeOSMemory()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

// bulkHash is HashPassword for hashPasswords' workers: the same argon2id
// parameters, outside the logins' hash slots (the pool bounds the memory
// instead).
func bulkHash(password string) (string, error) {
	salt, err := newSalt()
	if err != nil {
		return "", err
	}
	return formatHash(salt, argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)), nil
}
