//go:build goolm

package bridgetest_test

import (
	"context"
	"testing"
	"time"

	"go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
)

// echoNetwork is a test fixture: a network where one room ("Echo room")
// holds the logged-in user and "alice"; messages from Matrix are recorded,
// and the test makes alice speak with say.
type echoNetwork struct {
	br         *bridgev2.Bridge
	config     echoConfig
	fromMatrix chan string
}

type echoConfig struct {
	Greeting string `yaml:"greeting"`
}

func echoKind() bridges.Kind {
	return bridges.Kind{Name: "echo", Description: "A network that only echoes (test fixture)",
		NewNetwork: func() bridgev2.NetworkConnector { return &echoNetwork{fromMatrix: make(chan string, 16)} }}
}

func (n *echoNetwork) Init(br *bridgev2.Bridge)         { n.br = br }
func (n *echoNetwork) Start(context.Context) error      { return nil }
func (n *echoNetwork) GetBridgeInfoVersion() (int, int) { return 1, 1 }
func (n *echoNetwork) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{DisplayName: "Echo", NetworkURL: "https://echo.invalid", NetworkID: "echo", BeeperBridgeType: "matrixos-echo"}
}
func (n *echoNetwork) GetDBMetaTypes() database.MetaTypes { return database.MetaTypes{} }
func (n *echoNetwork) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}
func (n *echoNetwork) GetConfig() (string, any, configupgrade.Upgrader) {
	return "greeting: hello\n", &n.config, nil
}
func (n *echoNetwork) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	login.Client = &echoClient{net: n, login: login}
	return nil
}
func (n *echoNetwork) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{Name: "Name", Description: "Log in with any name", ID: "name"}}
}
func (n *echoNetwork) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	return &echoLogin{net: n, user: user}, nil
}

// say makes alice send text in the echo room of the login.
func (n *echoNetwork) say(t *testing.T, loginID networkid.UserLoginID, msgID, text string) {
	t.Helper()
	login := n.br.GetCachedUserLoginByID(loginID)
	if login == nil {
		t.Fatalf("no login %s", loginID)
	}
	login.QueueRemoteEvent(&simplevent.Message[string]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    networkid.PortalKey{ID: "room", Receiver: loginID},
			Sender:       bridgev2.EventSender{Sender: "alice"},
			CreatePortal: true,
			Timestamp:    time.Now(),
		},
		Data: text,
		ID:   networkid.MessageID(msgID),
		ConvertMessageFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, text string) (*bridgev2.ConvertedMessage, error) {
			return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
				Type: event.EventMessage, Content: &event.MessageEventContent{MsgType: event.MsgText, Body: text},
			}}}, nil
		},
	})
}

type echoLogin struct {
	net  *echoNetwork
	user *bridgev2.User
}

func (l *echoLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	return &bridgev2.LoginStep{
		Type: bridgev2.LoginStepTypeUserInput, StepID: "echo.name", Instructions: "Enter a name",
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{
			{Type: bridgev2.LoginInputFieldTypeUsername, ID: "name", Name: "Name"},
		}},
	}, nil
}

func (l *echoLogin) Cancel() {}

func (l *echoLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	name := input["name"]
	login, err := l.user.NewLogin(ctx, &database.UserLogin{ID: networkid.UserLoginID(name), RemoteName: name},
		&bridgev2.NewLoginParams{LoadUserLogin: l.net.LoadUserLogin})
	if err != nil {
		return nil, err
	}
	go login.Client.Connect(login.Log.WithContext(context.Background()))
	return &bridgev2.LoginStep{
		Type: bridgev2.LoginStepTypeComplete, StepID: "echo.complete", Instructions: "Logged in as " + name,
		CompleteParams: &bridgev2.LoginCompleteParams{UserLoginID: login.ID, UserLogin: login},
	}, nil
}

type echoClient struct {
	net   *echoNetwork
	login *bridgev2.UserLogin
}

func (c *echoClient) Connect(ctx context.Context) {
	c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
}
func (c *echoClient) Disconnect()                      {}
func (c *echoClient) IsLoggedIn() bool                 { return true }
func (c *echoClient) LogoutRemote(ctx context.Context) {}
func (c *echoClient) IsThisUser(ctx context.Context, user networkid.UserID) bool {
	return string(user) == string(c.login.ID)
}
func (c *echoClient) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	name := "Echo room"
	return &bridgev2.ChatInfo{Name: &name, Members: &bridgev2.ChatMemberList{IsFull: true, Members: []bridgev2.ChatMember{
		{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: networkid.UserID(c.login.ID)}, Membership: event.MembershipJoin},
		{EventSender: bridgev2.EventSender{Sender: "alice"}, Membership: event.MembershipJoin},
	}}}, nil
}
func (c *echoClient) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	name := string(ghost.ID)
	return &bridgev2.UserInfo{Name: &name}, nil
}
func (c *echoClient) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	return &event.RoomFeatures{}
}
func (c *echoClient) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	c.net.fromMatrix <- msg.Content.Body
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID: networkid.MessageID("m-" + msg.Event.ID), SenderID: networkid.UserID(c.login.ID), Timestamp: time.Now(),
	}}, nil
}

// TestEchoBridgeEncrypted runs a bridge end to end in encrypted rooms: the
// bot answers help and a login in a DM, a portal room is created for a
// network chat, and messages cross both ways.
func TestEchoBridgeEncrypted(t *testing.T) {
	env := bridgetest.Start(t, echoKind(), "")
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "This room has been marked as your management room")

	env.Send(dm, "help")
	env.WaitMessage(dm, env.Bot, "login")

	env.Send(dm, "login")
	env.WaitMessage(dm, env.Bot, "Enter a name")
	env.Send(dm, "tester")
	env.WaitMessage(dm, env.Bot, "Logged in as tester")

	network := env.Network.(*echoNetwork)
	if network.config.Greeting != "hello" {
		t.Errorf("network config greeting = %q, want the example's hello", network.config.Greeting)
	}
	network.say(t, "tester", "n1", "hello from the network")
	portal := env.WaitPortal("Echo room")
	alice := id.NewUserID("echo_alice", env.Node.Config.ServerName)
	env.WaitMessage(portal, alice, "hello from the network")

	env.Send(portal, "hello from Matrix")
	select {
	case body := <-network.fromMatrix:
		if body != "hello from Matrix" {
			t.Errorf("network got %q, want %q", body, "hello from Matrix")
		}
	case <-time.After(bridgetest.Timeout):
		t.Fatal("the message from Matrix did not reach the network")
	}
}
