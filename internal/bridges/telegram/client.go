package telegram

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/updates"
	"github.com/gotd/td/telegram/updates/hook"
	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
)

// Client is one logged-in Telegram account.
type Client struct {
	connector *Connector
	login     *bridgev2.UserLogin

	mu      sync.Mutex
	api     *telegram.Client
	stop    context.CancelFunc
	done    chan struct{}
	manager *updates.Manager
	users   map[int64]*tg.User // users seen in updates, for access hashes and names
	running bool
}

var (
	_ bridgev2.NetworkAPI = (*Client)(nil)
)

func newClient(c *Connector, login *bridgev2.UserLogin) *Client {
	return &Client{connector: c, login: login, users: map[int64]*tg.User{}}
}

func (tc *Client) meta() *UserLoginMetadata { return tc.login.Metadata.(*UserLoginMetadata) }

func (tc *Client) selfID() int64 {
	id, _ := strconv.ParseInt(string(tc.login.ID), 10, 64)
	return id
}

// Connect runs the gotd client and its updates manager until Disconnect.
// On a client whose run is going on already it does nothing: a second run
// beside it would take the same updates, and Disconnect would stop only
// the second.
func (tc *Client) Connect(ctx context.Context) {
	defer tc.connector.guard.Recover() // bridgev2's reconnect calls it from a goroutine of its own
	opts, err := tc.connector.clientOptions()
	if err != nil {
		tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateUnknownError, Error: "tg-config", Message: err.Error()})
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.stop != nil {
		select {
		case <-tc.done:
			// Its context ended without Disconnect: a new run may start.
		default:
			return
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	tc.stop, tc.done = stop, done
	tc.connector.guard.Go(func() {
		defer close(done)
		backoff := reconnectMin
		for {
			began := time.Now()
			err := tc.run(runCtx, opts)
			if runCtx.Err() != nil {
				return
			}
			if time.Since(began) > reconnectMax {
				backoff = reconnectMin
			}
			tc.login.Log.Err(err).Dur("retry_in", backoff).Msg("Telegram client stopped; connecting again")
			tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: "tg-disconnected", Message: fmt.Sprint(err)})
			select {
			case <-runCtx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, reconnectMax)
		}
	})
}

// reconnectMin and reconnectMax bound the wait before the client connects
// again after it stopped with an error (doubling from the first to the
// second; a run that lasted longer than the second starts over).
var (
	reconnectMin = time.Second
	reconnectMax = 5 * time.Minute
)

// run runs one gotd client and its updates manager until ctx is done or
// the client stops; the session and update state live in the login's
// metadata, so the next run goes on from them.
func (tc *Client) run(ctx context.Context, opts telegram.Options) error {
	storage := &stateStorage{client: tc}
	manager := updates.New(updates.Config{
		Handler: newUpdateHandler(tc), Storage: storage, AccessHasher: storage,
		OnChannelTooLong: func(channel int64) { tc.catchUpChannel(ctx, channel) },
	})
	opts.SessionStorage = &sessionStorage{client: tc}
	opts.UpdateHandler = manager
	// The updates a call answers with (an edit, a reaction) go through the
	// manager too, so that its pts follows them.
	opts.Middlewares = append(slices.Clone(opts.Middlewares), hook.UpdateHook(manager.Handle))
	api := telegram.NewClient(tc.connector.Config.APIID, tc.connector.Config.APIHash, opts)
	tc.mu.Lock()
	tc.api, tc.manager = api, manager
	tc.mu.Unlock()
	err := api.Run(ctx, func(ctx context.Context) error {
		self, err := api.Self(ctx)
		if err != nil {
			return fmt.Errorf("reading the account: %w", err)
		}
		tc.rememberUser(ctx, self)
		tc.mu.Lock()
		tc.running = true
		tc.mu.Unlock()
		tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
		return manager.Run(ctx, api.API(), self.ID, updates.AuthOptions{})
	})
	tc.mu.Lock()
	tc.running = false
	tc.mu.Unlock()
	if err == nil {
		err = errors.New("the Telegram client stopped")
	}
	return err
}

// Disconnect stops the client and waits for it.
func (tc *Client) Disconnect() {
	tc.mu.Lock()
	stop, done := tc.stop, tc.done
	tc.stop = nil
	tc.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// handleOwnUpdate hands the updates manager an update a call's answer
// stands for (as messages.affectedMessages does), so that it sees no gap.
func (tc *Client) handleOwnUpdate(ctx context.Context, u tg.UpdateClass) {
	tc.mu.Lock()
	manager := tc.manager
	tc.mu.Unlock()
	if manager == nil {
		return
	}
	if err := manager.Handle(ctx, &tg.UpdateShort{Update: u, Date: int(time.Now().Unix())}); err != nil {
		tc.login.Log.Warn().Err(err).Msg("Handing an own update to the updates manager failed")
	}
}

// IsLoggedIn reports whether the account is connected.
func (tc *Client) IsLoggedIn() bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.running
}

// LogoutRemote ends the session on Telegram (auth.logOut, so it leaves
// the account's active sessions), then disconnects; the session is dropped
// with the login. A failed logOut is logged: the login goes either way.
func (tc *Client) LogoutRemote(ctx context.Context) {
	if api, err := tc.client(); err == nil {
		if _, err := api.AuthLogOut(ctx); err != nil {
			tc.login.Log.Warn().Err(err).Msg("auth.logOut failed; the Telegram session stays listed in the account's sessions")
		}
	}
	tc.Disconnect()
}

// IsThisUser reports whether a ghost is the logged-in account.
func (tc *Client) IsThisUser(_ context.Context, userID networkid.UserID) bool {
	return userID == ghostID(tc.selfID())
}

// remember keeps the users and channels an update names, for their names
// and access hashes.
func (tc *Client) remember(ctx context.Context, e tg.Entities) {
	for _, u := range e.Users {
		tc.rememberUser(ctx, u)
	}
	for _, ch := range e.Channels {
		tc.rememberChannel(ctx, ch)
	}
}

// rememberUser keeps a user for their name, and their access hash in the
// login's metadata too: without it, a restarted bridge could not name the
// user to Telegram (an InputPeerUser with hash 0 is PEER_ID_INVALID).
func (tc *Client) rememberUser(ctx context.Context, u *tg.User) {
	err := tc.update(ctx, func(m *UserLoginMetadata) bool {
		tc.users[u.ID] = u
		if u.Min || u.AccessHash == 0 {
			// A min user's hash is no good for naming them.
			return false
		}
		return m.rememberAccessHash(u.ID, u.AccessHash)
	})
	if err != nil {
		tc.login.Log.Warn().Err(err).Int64("user_id", u.ID).Msg("Saving a Telegram user's access hash failed")
	}
}

// user returns a known user, asking Telegram for one not seen since the
// bridge started (with the access hash kept from before).
func (tc *Client) user(ctx context.Context, id int64) (*tg.User, error) {
	tc.mu.Lock()
	u, ok := tc.users[id]
	hash := tc.meta().AccessHashes[id]
	api := tc.api
	tc.mu.Unlock()
	if ok {
		return u, nil
	}
	if api == nil {
		return nil, errors.New("not connected to Telegram")
	}
	found, err := api.API().UsersGetUsers(ctx, []tg.InputUserClass{&tg.InputUser{UserID: id, AccessHash: hash}})
	if err != nil {
		return nil, fmt.Errorf("users.getUsers %d: %w", id, err)
	}
	for _, f := range found {
		if u, ok := f.(*tg.User); ok && u.ID == id {
			tc.rememberUser(ctx, u)
			return u, nil
		}
	}
	return nil, fmt.Errorf("Telegram knows no user %d", id)
}

// GetUserInfo names a ghost after the Telegram user.
func (tc *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	id, err := strconv.ParseInt(string(ghost.ID), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("ghost ID %q: %w", ghost.ID, err)
	}
	u, err := tc.user(ctx, id)
	if err != nil {
		return nil, err
	}
	name := displayName(u)
	info := &bridgev2.UserInfo{Name: &name, Avatar: tc.avatar(u)}
	if u.Phone != "" {
		info.Identifiers = []string{"tel:+" + strings.TrimPrefix(u.Phone, "+")}
	}
	return info, nil
}

// GetCapabilities: text with replies, edits, deletes and one reaction per
// user and message, and files with a caption: images, voice messages,
// audio, videos, GIFs, stickers and other files (see inputMedia).
func (tc *Client) GetCapabilities(context.Context, *bridgev2.Portal) *event.RoomFeatures {
	files := &event.FileFeatures{
		MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported},
		Caption:   event.CapLevelFullySupported,
		MaxSize:   tc.connector.Config.maxFileSize(),
	}
	return &event.RoomFeatures{
		ID: "org.matrixos.telegram.v3",
		File: event.FileFeatureMap{
			event.MsgImage: files, event.MsgFile: files, event.MsgVideo: files, event.MsgAudio: files,
			event.CapMsgVoice: files, event.CapMsgGIF: files, event.CapMsgSticker: files,
		},
		MaxTextLength: maxMessageLength,
		Reply:         event.CapLevelFullySupported,
		Edit:          event.CapLevelFullySupported,
		Delete:        event.CapLevelFullySupported,
		Reaction:      event.CapLevelFullySupported,
		ReactionCount: 1,
	}
}

func ghostID(user int64) networkid.UserID {
	return networkid.UserID(strconv.FormatInt(user, 10))
}
