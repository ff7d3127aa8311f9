package discord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
)

const (
	flowBotToken  = "bot-token"
	flowUserToken = "user-token"
	stepBotToken  = "org.matrixos.discord.bot_token"
	stepUserToken = "org.matrixos.discord.user_token"
	stepLoginDone = "org.matrixos.discord.complete"
	fieldToken    = "token"
	maxTokenBytes = 200
)

// GetLoginFlows lists the ways to log in: a bot token (a relay bot), or,
// where the user chooses it, their own account's token.
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "Bot token",
		Description: "Log in with a Discord bot's token; the bot relays the guild channels it can see and its DMs.",
		ID:          flowBotToken,
	}, {
		Name: "User token",
		Description: "Log in with your own Discord account's token: your DMs, group DMs and guild channels become rooms " +
			"and you write as yourself. Against Discord's terms of service: at your own risk.",
		ID: flowUserToken,
	}}
}

// CreateLogin starts a login flow for a Matrix user.
func (c *Connector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	switch flowID {
	case flowBotToken:
		return &tokenLogin{connector: c, user: user}, nil
	case flowUserToken:
		return &tokenLogin{connector: c, user: user, userToken: true}, nil
	}
	return nil, fmt.Errorf("discord: unknown login flow %q", flowID)
}

// tokenLogin asks for a bot's or a user's token, checks it with GET
// /users/@me and stores the login.
type tokenLogin struct {
	connector *Connector
	user      *bridgev2.User
	userToken bool // a user account's token, not a bot's
}

var _ bridgev2.LoginProcessUserInput = (*tokenLogin)(nil)

func (l *tokenLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	if l.userToken {
		return &bridgev2.LoginStep{
			Type:   bridgev2.LoginStepTypeUserInput,
			StepID: stepUserToken,
			Instructions: "Logging in with your own account's token is against Discord's terms of service; Discord may " +
				"suspend accounts that do it. Go on only at your own risk. The token is in the Authorization header of " +
				"requests the Discord web app makes (browser developer tools, Network tab). Send it to log in.",
			UserInputParams: &bridgev2.LoginUserInputParams{
				Fields: []bridgev2.LoginInputDataField{{
					Type:        bridgev2.LoginInputFieldTypeToken,
					ID:          fieldToken,
					Name:        "User token",
					Description: "Your Discord account's token",
				}},
			},
		}, nil
	}
	return &bridgev2.LoginStep{
		Type:   bridgev2.LoginStepTypeUserInput,
		StepID: stepBotToken,
		Instructions: "Create an application at https://discord.com/developers/applications, add a bot, " +
			"turn on its Message Content intent, invite it to your server, then send the bot's token.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{{
				Type:        bridgev2.LoginInputFieldTypeToken,
				ID:          fieldToken,
				Name:        "Bot token",
				Description: "The token from the Bot page of your Discord application",
			}},
		},
	}, nil
}

func (l *tokenLogin) Cancel() {}

// errBadToken is shown to the user when Discord refuses the token.
var errBadToken = bridgev2.RespError{
	ErrCode:    "ORG.MATRIXOS.DISCORD.BAD_TOKEN",
	Err:        "Discord refused that bot token",
	StatusCode: http.StatusBadRequest,
}

// authorization is the Authorization header of a token: bots' carry "Bot ".
func authorization(token string, userToken bool) string {
	if userToken {
		return token
	}
	return "Bot " + token
}

func (l *tokenLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	kind := "bot"
	if l.userToken {
		kind = "user"
	}
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(input[fieldToken]), "Bot "))
	if token == "" || len(token) > maxTokenBytes || strings.ContainsAny(token, " \t\r\n") {
		return nil, errBadToken.WithMessage("That does not look like a Discord %s token", kind)
	}
	session, err := discordgo.New(authorization(token, l.userToken))
	if err != nil {
		return nil, fmt.Errorf("discord: new session: %w", err)
	}
	session.Client = l.connector.httpClient
	me, err := session.User("@me", discordgo.WithContext(ctx))
	var restErr *discordgo.RESTError
	switch {
	case errors.As(err, &restErr) && restErr.Response != nil && restErr.Response.StatusCode == http.StatusUnauthorized:
		return nil, errBadToken.WithMessage("Discord refused that %s token", kind)
	case err != nil:
		return nil, fmt.Errorf("discord: checking the token: %w", err)
	case me.Bot != !l.userToken:
		return nil, errBadToken.WithMessage("That token is not a %s's token", kind)
	}
	login, err := l.connector.newLogins.New(ctx, l.user, &database.UserLogin{
		ID:         networkid.UserLoginID(me.ID),
		RemoteName: me.Username,
		Metadata:   &UserLoginMetadata{Token: token, UserToken: l.userToken},
	}, &bridgev2.NewLoginParams{DeleteOnConflict: true})
	if err != nil {
		return nil, fmt.Errorf("discord: saving the login: %w", err)
	}
	done := fmt.Sprintf("Logged in as the bot %s; its guild channels will appear as rooms.", me.Username)
	if l.userToken {
		done = fmt.Sprintf("Logged in as %s; your DMs, group DMs and guild channels will appear as rooms.", me.Username)
	}
	return &bridgev2.LoginStep{
		Type:           bridgev2.LoginStepTypeComplete,
		StepID:         stepLoginDone,
		Instructions:   done,
		CompleteParams: &bridgev2.LoginCompleteParams{UserLoginID: login.ID, UserLogin: login},
	}, nil
}
