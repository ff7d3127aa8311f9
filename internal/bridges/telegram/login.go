package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/auth"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
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
}

const (
	loginFlowPhone    = "phone"
	loginStepPhone    = "org.matrixos.telegram.login.phone"
	loginStepCode     = "org.matrixos.telegram.login.code"
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
	return &phoneLogin{connector: c, user: user}, nil
}

// phoneLogin holds a connected gotd client between the two steps.
type phoneLogin struct {
	connector *Connector
	user      *bridgev2.User

	storage *session.StorageMemory
	api     *telegram.Client
	stop    context.CancelFunc
	done    chan error
	phone   string
	hash    string
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

// Cancel disconnects the login's client.
func (l *phoneLogin) Cancel() {
	if l.stop != nil {
		l.stop()
		<-l.done
		l.stop = nil
	}
}

// SubmitUserInput takes the phone number (sending the code), then the code.
func (l *phoneLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	if l.hash == "" {
		return l.sendCode(ctx, strings.TrimSpace(input["phone"]))
	}
	return l.signIn(ctx, strings.TrimSpace(input["code"]))
}

func (l *phoneLogin) sendCode(ctx context.Context, phone string) (*bridgev2.LoginStep, error) {
	if err := l.connect(); err != nil {
		return nil, err
	}
	sent, err := l.api.Auth().SendCode(ctx, phone, auth.SendCodeOptions{})
	if rpcErr, ok := tgerr.As(err); ok && rpcErr.IsOneOf("PHONE_NUMBER_INVALID", "PHONE_NUMBER_BANNED", "PHONE_NUMBER_FLOOD") {
		l.Cancel()
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
	ctx, stop := context.WithCancel(l.connector.Bridge.BackgroundCtx)
	l.stop, l.done = stop, make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		l.done <- l.api.Run(ctx, func(ctx context.Context) error {
			close(ready)
			<-ctx.Done()
			return nil
		})
	}()
	select {
	case <-ready:
		return nil
	case err := <-l.done:
		l.stop = nil
		return fmt.Errorf("connecting to Telegram: %w", err)
	}
}

func (l *phoneLogin) signIn(ctx context.Context, code string) (*bridgev2.LoginStep, error) {
	authorization, err := l.api.Auth().SignIn(ctx, l.phone, code, l.hash)
	switch {
	case errors.Is(err, auth.ErrPasswordAuthNeeded):
		l.Cancel()
		return nil, errors.New("this account has a two-step verification password, which the bridge does not support yet")
	case tgerr.Is(err, "PHONE_CODE_INVALID"):
		return l.codeStep("Telegram did not accept the code; enter it again."), nil
	case err != nil:
		l.Cancel()
		return nil, fmt.Errorf("Telegram refused the login: %w", err)
	}
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
	login, err := l.user.NewLogin(ctx, &database.UserLogin{
		ID:         loginID(self.ID),
		RemoteName: displayName(self),
		Metadata:   &UserLoginMetadata{Phone: l.phone, Session: data},
	}, &bridgev2.NewLoginParams{DeleteOnConflict: true, LoadUserLogin: l.connector.LoadUserLogin})
	if err != nil {
		return nil, fmt.Errorf("saving the login: %w", err)
	}
	go login.Client.Connect(login.Log.WithContext(l.connector.Bridge.BackgroundCtx))
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
