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
	flowBotToken     = "bot-token"
	stepBotToken     = "org.matrixos.discord.bot_token"
	stepLoginDone    = "org.matrixos.discord.complete"
	fieldBotToken    = "token"
	maxBotTokenBytes = 200
)

// GetLoginFlows lists the ways to log in: a bot token.
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "Bot token",
		Description: "Log in with a Discord bot's token; the bot relays the guild channels it can see and its DMs.",
		ID:          flowBotToken,
	}}
}

// CreateLogin starts a login flow for a Matrix user.
func (c *Connector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != flowBotToken {
		return nil, fmt.Errorf("discord: unknown login flow %q", flowID)
	}
	return &botTokenLogin{connector: c, user: user}, nil
}

// botTokenLogin asks for a bot token, checks it with GET /users/@me and
// stores the login.
type botTokenLogin struct {
	connector *Connector
	user      *bridgev2.User
}

var _ bridgev2.LoginProcessUserInput = (*botTokenLogin)(nil)

func (l *botTokenLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	return &bridgev2.LoginStep{
		Type:   bridgev2.LoginStepTypeUserInput,
		StepID: stepBotToken,
		Instructions: "Create an application at https://discord.com/developers/applications, add a bot, " +
			"turn on its Message Content intent, invite it to your server, then send the bot's token.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{{
				Type:        bridgev2.LoginInputFieldTypeToken,
				ID:          fieldBotToken,
				Name:        "Bot token",
				Description: "The token from the Bot page of your Discord application",
			}},
		},
	}, nil
}

func (l *botTokenLogin) Cancel() {}

// errBadToken is shown to the user when Discord refuses the token.
var errBadToken = bridgev2.RespError{
	ErrCode:    "ORG.MATRIXOS.DISCORD.BAD_TOKEN",
	Err:        "Discord refused that bot token",
	StatusCode: http.StatusBadRequest,
}

func (l *botTokenLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(input[fieldBotToken]), "Bot "))
	if token == "" || len(token) > maxBotTokenBytes || strings.ContainsAny(token, " \t\r\n") {
		return nil, errBadToken.WithMessage("That does not look like a Discord bot token")
	}
	session, err := discordgo.New("Bot " + token)
	if err != nil {
		return nil, fmt.Errorf("discord: new session: %w", err)
	}
	session.Client = l.connector.httpClient
	me, err := session.User("@me", discordgo.WithContext(ctx))
	var restErr *discordgo.RESTError
	switch {
	case errors.As(err, &restErr) && restErr.Response != nil && restErr.Response.StatusCode == http.StatusUnauthorized:
		return nil, errBadToken
	case err != nil:
		return nil, fmt.Errorf("discord: checking the token: %w", err)
	case !me.Bot:
		return nil, errBadToken.WithMessage("That token is not a bot's token")
	}
	login, err := l.user.NewLogin(ctx, &database.UserLogin{
		ID:         networkid.UserLoginID(me.ID),
		RemoteName: me.Username,
		Metadata:   &UserLoginMetadata{Token: token},
	}, &bridgev2.NewLoginParams{DeleteOnConflict: true})
	if err != nil {
		return nil, fmt.Errorf("discord: saving the login: %w", err)
	}
	l.connector.guard.Go(func() { login.Client.Connect(login.Log.WithContext(context.Background())) })
	return &bridgev2.LoginStep{
		Type:           bridgev2.LoginStepTypeComplete,
		StepID:         stepLoginDone,
		Instructions:   fmt.Sprintf("Logged in as the bot %s; its guild channels will appear as rooms.", me.Username),
		CompleteParams: &bridgev2.LoginCompleteParams{UserLoginID: login.ID, UserLogin: login},
	}, nil
}
