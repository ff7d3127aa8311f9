package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/auth"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"
)

// UserLoginMetadata is what a Telegram login keeps in bridgev2's database:
// the gotd session (auth key and DC) and the update state.
type UserLoginMetadata struct {
	Phone   string `json:"phone"`
	Session []byte `json:"session"`
	Pts     int    `json:"pts"`
	Qts     int    `json:"qts"`
	Date    int    `json:"date"`
	Seq     int    `json:"seq"`
	// AccessHashes are the access hashes of the users the account has
	// seen, by user ID: Telegram takes a user only with theirs.
	AccessHashes map[int64]int64 `json:"access_hashes,omitempty"`
	// ChannelPts and ChannelHashes are each channel's (supergroup's or
	// broadcast channel's) update state and access hash, by channel ID.
	ChannelPts    map[int64]int   `json:"channel_pts,omitempty"`
	ChannelHashes map[int64]int64 `json:"channel_hashes,omitempty"`
}

const (
	loginFlowPhone    = "phone"
	loginStepPhone    = "org.matrixos.telegram.login.phone"
	loginStepCode     = "org.matrixos.telegram.login.code"
	loginStepPassword = "org.matrixos.telegram.login.password"
	loginStepComplete = "org.matrixos.telegram.login.complete"
)

// GetLoginFlows offers phone number and code.
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "Phone number",
		Description: "Log in with your phone number and the code Telegram sends you",
		ID:          loginFlowPhone,
	}}
}

// CreateLogin starts a phone login.
func (c *Connector) CreateLogin(_ context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != loginFlowPhone {
		return nil, fmt.Errorf("unknown login flow %q", flowID)
	}
	if err := c.Config.checkApp(); err != nil {
		return nil, err
	}
	l := &phoneLogin{connector: c, user: user}
	if user != nil {
		c.replaceLogin(user.MXID, l)
	}
	return l, nil
}

// loginTimeout is how long a login keeps its Telegram connection waiting
// for the code before it gives up.
var loginTimeout = 10 * time.Minute

// replaceLogin makes l the user's login in progress, cancelling the one
// before it: a user has one pending login, and an abandoned one does not
// keep its connection.
func (c *Connector) replaceLogin(user id.UserID, l *phoneLogin) {
	c.loginsMu.Lock()
	previous := c.logins[user]
	if c.logins == nil {
		c.logins = map[id.UserID]*phoneLogin{}
	}
	c.logins[user] = l
	c.loginsMu.Unlock()
	if previous != nil {
		previous.Cancel()
	}
}

// forgetLogin drops l as its user's login in progress.
func (c *Connector) forgetLogin(l *phoneLogin) {
	if l.user == nil {
		return
	}
	c.loginsMu.Lock()
	defer c.loginsMu.Unlock()
	if c.logins[l.user.MXID] == l {
		delete(c.logins, l.user.MXID)
	}
}

// phoneLogin holds a connected gotd client between the two steps, for at
// most loginTimeout.
type phoneLogin struct {
	connector *Connector
	user      *bridgev2.User

	mu        sync.Mutex // guards the three below: a newer login cancels this one
	stop      context.CancelFunc
	ended     chan struct{} // closed when the client stopped
	cancelled bool

	storage *session.StorageMemory
	api     *telegram.Client
	phone   string
	hash    string
	// needsPassword is set once the code was right and Telegram asks for
	// the account's cloud password (two-step verification).
	needsPassword bool
}

var _ bridgev2.LoginProcessUserInput = (*phoneLogin)(nil)

// Start asks for the phone number.
func (l *phoneLogin) Start(context.Context) (*bridgev2.LoginStep, error) {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       loginStepPhone,
		Instructions: "Enter the phone number of your Telegram account, in international format.",
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypePhoneNumber,
			ID:   "phone",
			Name: "Phone number",
		}}},
	}, nil
}

// Cancel ends the login: its client is disconnected.
func (l *phoneLogin) Cancel() {
	l.connector.forgetLogin(l)
	l.mu.Lock()
	l.cancelled = true
	l.mu.Unlock()
	l.disconnect()
}

// disconnect stops the login's client, if it runs, and waits for it.
func (l *phoneLogin) disconnect() {
	l.mu.Lock()
	stop, ended := l.stop, l.ended
	l.stop, l.ended = nil, nil
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-ended
	}
}

// errLoginExpired is why a code comes too late: the login's connection
// timed out or a newer login replaced it.
var errLoginExpired = errors.New("this Telegram login expired (it waited too long for the code, or a newer login replaced it); start it again")

// expired reports whether the login was cancelled or its client stopped
// by itself (its timeout).
func (l *phoneLogin) expired() bool {
	l.mu.Lock()
	ended, cancelled := l.ended, l.cancelled
	l.mu.Unlock()
	if cancelled {
		return true
	}
	if ended == nil {
		return false
	}
	select {
	case <-ended:
		return true
	default:
		return false
	}
}

// SubmitUserInput takes the phone number (sending the code), then the code.
func (l *phoneLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	if l.expired() {
		l.Cancel()
		return nil, errLoginExpired
	}
	switch {
	case l.hash == "":
		return l.sendCode(ctx, strings.TrimSpace(input["phone"]))
	case l.needsPassword:
		return l.checkPassword(ctx, input["password"])
	}
	return l.signIn(ctx, strings.TrimSpace(input["code"]))
}

func (l *phoneLogin) sendCode(ctx context.Context, phone string) (*bridgev2.LoginStep, error) {
	if err := l.connect(); err != nil {
		return nil, err
	}
	sent, err := l.api.Auth().SendCode(ctx, phone, auth.SendCodeOptions{})
	if rpcErr, ok := tgerr.As(err); ok && rpcErr.IsOneOf("PHONE_NUMBER_INVALID", "PHONE_NUMBER_BANNED", "PHONE_NUMBER_FLOOD") {
		l.disconnect()
		step, _ := l.Start(ctx)
		step.Instructions = fmt.Sprintf("Telegram did not take %q (%s); enter the phone number again, in international format (+ and country code).", phone, rpcErr.Type)
		return step, nil
	}
	if err != nil {
		l.Cancel()
		return nil, fmt.Errorf("Telegram did not send a code: %w", err)
	}
	code, ok := sent.(*tg.AuthSentCode)
	if !ok {
		l.Cancel()
		return nil, fmt.Errorf("Telegram answered the code request with %T", sent)
	}
	l.phone, l.hash = phone, code.PhoneCodeHash
	return l.codeStep("Enter the code Telegram sent you."), nil
}

// codeStep asks for the login code.
func (l *phoneLogin) codeStep(instructions string) *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       loginStepCode,
		Instructions: instructions,
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldType2FACode,
			ID:   "code",
			Name: "Code",
		}}},
	}
}

// connect runs a fresh gotd client with an empty session until the login ends.
func (l *phoneLogin) connect() error {
	opts, err := l.connector.clientOptions()
	if err != nil {
		return err
	}
	l.storage = &session.StorageMemory{}
	opts.SessionStorage = l.storage
	opts.NoUpdates = true
	l.api = telegram.NewClient(l.connector.Config.APIID, l.connector.Config.APIHash, opts)
	ctx, stop := context.WithTimeout(l.connector.Bridge.BackgroundCtx, loginTimeout)
	ended, ready := make(chan struct{}), make(chan struct{})
	l.mu.Lock()
	if l.cancelled {
		// A newer login of the user cancelled this one since its input
		// arrived: its client must not start, as nothing would stop it.
		l.mu.Unlock()
		stop()
		return errLoginExpired
	}
	l.stop, l.ended = stop, ended
	l.mu.Unlock()
	var runErr error
	l.connector.guard.Go(func() {
		defer close(ended)
		runErr = l.api.Run(ctx, func(ctx context.Context) error {
			close(ready)
			<-ctx.Done()
			return nil
		})
	})
	select {
	case <-ready:
		return nil
	case <-ended:
		l.disconnect()
		return fmt.Errorf("connecting to Telegram: %w", runErr)
	}
}

func (l *phoneLogin) signIn(ctx context.Context, code string) (*bridgev2.LoginStep, error) {
	authorization, err := l.api.Auth().SignIn(ctx, l.phone, code, l.hash)
	switch {
	case errors.Is(err, auth.ErrPasswordAuthNeeded):
		l.needsPassword = true
		return passwordStep("This account has two-step verification: enter its cloud password."), nil
	case tgerr.Is(err, "PHONE_CODE_INVALID"):
		return l.codeStep("Telegram did not accept the code; enter it again."), nil
	case err != nil:
		l.Cancel()
		return nil, fmt.Errorf("Telegram refused the login: %w", err)
	}
	return l.complete(ctx, authorization)
}

// passwordStep asks for the account's cloud password (the bot redacts the
// message that answers it).
func passwordStep(instructions string) *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       loginStepPassword,
		Instructions: instructions,
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypePassword,
			ID:   "password",
			Name: "Password",
		}}},
	}
}

// checkPassword proves the cloud password to Telegram by SRP
// (account.getPassword, then auth.checkPassword; the password itself never
// leaves the bridge). A wrong one is asked for again.
func (l *phoneLogin) checkPassword(ctx context.Context, password string) (*bridgev2.LoginStep, error) {
	if password == "" {
		return passwordStep("The password was empty; enter the account's cloud password."), nil
	}
	authorization, err := l.api.Auth().Password(ctx, password)
	switch {
	case errors.Is(err, auth.ErrPasswordInvalid):
		return passwordStep("Telegram did not accept the password (PASSWORD_HASH_INVALID); enter it again."), nil
	case err != nil:
		l.Cancel()
		return nil, fmt.Errorf("Telegram refused the password: %w", err)
	}
	return l.complete(ctx, authorization)
}

// complete saves the login Telegram authorized and connects its client.
func (l *phoneLogin) complete(ctx context.Context, authorization *tg.AuthAuthorization) (*bridgev2.LoginStep, error) {
	self, ok := authorization.User.(*tg.User)
	if !ok {
		l.Cancel()
		return nil, fmt.Errorf("Telegram answered the login with %T", authorization.User)
	}
	l.Cancel()
	data, err := l.storage.Bytes(nil)
	if err != nil {
		return nil, fmt.Errorf("reading the Telegram session: %w", err)
	}
	login, err := l.connector.newLogins.New(ctx, l.user, &database.UserLogin{
		ID:         loginID(self.ID),
		RemoteName: displayName(self),
		Metadata:   &UserLoginMetadata{Phone: l.phone, Session: data},
	}, &bridgev2.NewLoginParams{DeleteOnConflict: true, LoadUserLogin: l.connector.LoadUserLogin})
	if err != nil {
		return nil, fmt.Errorf("saving the login: %w", err)
	}
	return &bridgev2.LoginStep{
		Type:           bridgev2.LoginStepTypeComplete,
		StepID:         loginStepComplete,
		Instructions:   fmt.Sprintf("Logged in to Telegram as %s", displayName(self)),
		CompleteParams: &bridgev2.LoginCompleteParams{UserLoginID: login.ID, UserLogin: login},
	}, nil
}

func loginID(userID int64) networkid.UserLoginID {
	return networkid.UserLoginID(strconv.FormatInt(userID, 10))
}

func displayName(u *tg.User) string {
	return strings.TrimSpace(u.FirstName + " " + u.LastName)
}
