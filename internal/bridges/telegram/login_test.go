//go:build goolm

package telegram_test

import (
	"testing"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// TestTelegramTwoStepLogin logs in to an account with two-step
// verification: after the code the bot asks for the cloud password, which
// the bridge proves by SRP against the verifier the fake keeps; a wrong
// password is refused (PASSWORD_HASH_INVALID) and asked for again, the
// right one logs in, and the account's messages arrive in its portal.
func TestTelegramTwoStepLogin(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	fake.SetPassword(h.mia, "correct horse battery staple")
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "management room")
	h.command(dm, "login", "Please enter your Phone number")
	h.command(dm, "+15550001", "Please enter your Code")
	h.command(dm, telegramfake.LoginCode, "Please enter your Password")
	h.command(dm, "wrong horse", "Telegram did not accept the password (PASSWORD_HASH_INVALID)", "Please enter your Password")
	if checked, refused := fake.PasswordChecks(h.mia); checked != 1 || refused != 1 {
		t.Fatalf("password checks on Telegram = %d (%d refused), want 1 refused", checked, refused)
	}
	h.command(dm, "correct horse battery staple", "Logged in to Telegram as Mia Example")
	if checked, refused := fake.PasswordChecks(h.mia); checked != 2 || refused != 1 {
		t.Fatalf("password checks on Telegram = %d (%d refused), want 2 with the second accepted", checked, refused)
	}
	h.waitSyncs(1)
	fake.Type(h.alice, h.mia, "hello to a two-step account")
	env.WaitMessage(env.WaitPortal("Alice Liddell"), h.aliceMX, "hello to a two-step account")
}
