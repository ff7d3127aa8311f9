//go:build goolm

package bridgetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/guard"
)

// EchoNetwork is a test fixture, a bridgev2 network connector for tests of
// the bridge machinery: a network where one room ("Echo room") holds the
// logged-in user and "alice"; messages from Matrix are recorded in
// FromMatrix, and the test makes alice speak with Say. Log in with the
// "login" command and any name. It is not a bridge of the node.
type EchoNetwork struct {
	br         *bridgev2.Bridge
	Config     EchoConfig
	FromMatrix chan string
	starts     *atomic.Int64
	failStarts int64
	panics     int64 // the first runs whose handler panics
}

// EchoConfig is the echo network's config section.
type EchoConfig struct {
	Greeting string `yaml:"greeting"`
}

// EchoKind is a bridge kind named name on the echo network. The first
// failStarts connectors started fail to start (for supervision tests);
// starts, when not nil, counts the starts.
func EchoKind(name string, failStarts int, starts *atomic.Int64) bridges.Kind {
	if starts == nil {
		starts = new(atomic.Int64)
	}
	return bridges.Kind{Name: name, Description: "A network that only echoes (test fixture)",
		NewNetwork: func() bridgev2.NetworkConnector {
			return &EchoNetwork{FromMatrix: make(chan string, 16), starts: starts, failStarts: int64(failStarts)}
		}}
}

// PanickingEchoKind is a bridge kind named name on the echo network whose
// first panics runs panic in a handler the connector runs in a goroutine
// of its own (as a network client's update handler runs), soon after the
// connector starts; starts, when not nil, counts the starts.
func PanickingEchoKind(name string, panics int, starts *atomic.Int64) bridges.Kind {
	kind := EchoKind(name, 0, starts)
	newNetwork := kind.NewNetwork
	kind.NewNetwork = func() bridgev2.NetworkConnector {
		n := newNetwork().(*EchoNetwork)
		n.panics = int64(panics)
		return n
	}
	return kind
}

// Init implements bridgev2.NetworkConnector.
func (n *EchoNetwork) Init(br *bridgev2.Bridge) { n.br = br }

// Start fails for the first starts of a kind made to fail, and starts the
// panicking handler in the first runs of a kind made to panic.
func (n *EchoNetwork) Start(ctx context.Context) error {
	if i := n.starts.Add(1); i <= n.failStarts {
		return fmt.Errorf("echo network: start %d of %d fails", i, n.failStarts)
	} else if i <= n.panics {
		guard.FromContext(ctx).Go(func() { n.handleUpdate(i) })
	}
	return nil
}

// handleUpdate stands for a network client's update handler that panics.
func (n *EchoNetwork) handleUpdate(start int64) {
	time.Sleep(100 * time.Millisecond)
	panic(fmt.Sprintf("echo network: the handler of start %d panicked", start))
}

func (n *EchoNetwork) GetBridgeInfoVersion() (int, int) { return 1, 1 }
func (n *EchoNetwork) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{DisplayName: "Echo", NetworkURL: "https://echo.invalid", NetworkID: "echo", BeeperBridgeType: "matrixos-echo"}
}
func (n *EchoNetwork) GetDBMetaTypes() database.MetaTypes { return database.MetaTypes{} }
func (n *EchoNetwork) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}
func (n *EchoNetwork) GetConfig() (string, any, configupgrade.Upgrader) {
	return "greeting: hello\n", &n.Config, nil
}
func (n *EchoNetwork) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	login.Client = &echoClient{net: n, login: login}
	return nil
}
func (n *EchoNetwork) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{Name: "Name", Description: "Log in with any name", ID: "name"}}
}
func (n *EchoNetwork) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	return &echoLogin{net: n, user: user}, nil
}

// Say makes alice send text in the echo room of the login.
func (n *EchoNetwork) Say(t testing.TB, loginID networkid.UserLoginID, msgID, text string) {
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
	net  *EchoNetwork
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
	net   *EchoNetwork
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
	c.net.FromMatrix <- msg.Content.Body
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID: networkid.MessageID("m-" + msg.Event.ID), SenderID: networkid.UserID(c.login.ID), Timestamp: time.Now(),
	}}, nil
}
