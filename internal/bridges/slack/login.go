package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"

	slackapi "github.com/slack-go/slack"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
)

// UserLoginMetadata is what a Slack login keeps in bridgev2's database.
type UserLoginMetadata struct {
	BotToken  string `json:"bot_token"`
	AppToken  string `json:"app_token"`
	TeamID    string `json:"team_id"`
	BotUserID string `json:"bot_user_id"`
	BotID     string `json:"bot_id"`
}

const loginFlowBotToken = "bot-token"

// GetLoginFlows offers the one way in: a Slack app's tokens.
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "App tokens",
		Description: "Log in with a Slack app's bot token (xoxb-) and app-level token (xapp-) with Socket Mode enabled",
		ID:          loginFlowBotToken,
	}}
}

// CreateLogin starts a login; the work happens when the tokens arrive.
func (c *Connector) CreateLogin(_ context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != loginFlowBotToken {
		return nil, fmt.Errorf("unknown login flow %q", flowID)
	}
	return &tokenLogin{connector: c, user: user}, nil
}

type tokenLogin struct {
	connector *Connector
	user      *bridgev2.User
}

var _ bridgev2.LoginProcessUserInput = (*tokenLogin)(nil)

const (
	loginStepTokens   = "org.matrixos.slack.login.tokens"
	loginStepComplete = "org.matrixos.slack.login.complete"
)

// Start asks for the two tokens.
func (l *tokenLogin) Start(context.Context) (*bridgev2.LoginStep, error) {
	return &bridgev2.LoginStep{
		Type:   bridgev2.LoginStepTypeUserInput,
		StepID: loginStepTokens,
		Instructions: "Create a Slack app with Socket Mode enabled (see the bridge docs for its scopes and events), " +
			"install it in your workspace and invite its bot user to the channels to bridge.",
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type:        bridgev2.LoginInputFieldTypeToken,
			ID:          "bot_token",
			Name:        "Bot token",
			Description: "The Bot User OAuth Token from the app's OAuth & Permissions page (xoxb-...)",
			Pattern:     `^xoxb-\S+$`,
		}, {
			Type:        bridgev2.LoginInputFieldTypeToken,
			ID:          "app_token",
			Name:        "App-level token",
			Description: "An app-level token with the connections:write scope from the app's Basic Information page (xapp-...)",
			Pattern:     `^xapp-\S+$`,
		}}},
	}, nil
}

// Cancel has nothing to undo.
func (l *tokenLogin) Cancel() {}

// errBadToken is the login error for a token Slack refuses.
var errBadToken = errors.New("Slack did not accept the token")

// SubmitUserInput checks both tokens with Slack (auth.test for the bot
// token, apps.connections.open for the app-level one), stores the login and
// connects it.
func (l *tokenLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	botToken := strings.TrimSpace(input["bot_token"])
	appToken := strings.TrimSpace(input["app_token"])
	switch {
	case !strings.HasPrefix(botToken, "xoxb-"):
		return nil, fmt.Errorf("the bot token must start with xoxb-")
	case !strings.HasPrefix(appToken, "xapp-"):
		return nil, fmt.Errorf("the app-level token must start with xapp-")
	}
	api := l.connector.newAPI(botToken, appToken)
	limits := newRateLimiter()
	auth, err := callSlack(ctx, limits, "auth.test", "", func() (*slackapi.AuthTestResponse, error) {
		return api.AuthTestContext(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: bot token: %w", errBadToken, err)
	}
	if auth.BotID == "" {
		return nil, fmt.Errorf("the token is not a bot token (auth.test names no bot)")
	}
	if _, err := callSlack(ctx, limits, "apps.connections.open", "", func() (string, error) {
		_, url, err := api.StartSocketModeContext(ctx)
		return url, err
	}); err != nil {
		return nil, fmt.Errorf("%w: app-level token (is Socket Mode enabled?): %w", errBadToken, err)
	}
	login, err := l.connector.newLogins.New(ctx, l.user, &database.UserLogin{
		ID:         loginID(auth.TeamID, auth.UserID),
		RemoteName: auth.Team,
		Metadata: &UserLoginMetadata{
			BotToken: botToken, AppToken: appToken,
			TeamID: auth.TeamID, BotUserID: auth.UserID, BotID: auth.BotID,
		},
	}, &bridgev2.NewLoginParams{
		DeleteOnConflict: true,
		LoadUserLogin:    l.connector.LoadUserLogin,
	})
	if err != nil {
		return nil, fmt.Errorf("saving the login: %w", err)
	}
	return &bridgev2.LoginStep{
		Type:           bridgev2.LoginStepTypeComplete,
		StepID:         loginStepComplete,
		Instructions:   fmt.Sprintf("Logged in to the Slack workspace %s as %s", auth.Team, auth.User),
		CompleteParams: &bridgev2.LoginCompleteParams{UserLoginID: login.ID, UserLogin: login},
	}, nil
}
