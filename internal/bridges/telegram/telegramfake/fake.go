// Package telegramfake is a Telegram server for tests: it speaks real
// MTProto on loopback through gotd's tgtest server, so the bridge's gotd
// client connects to it as it would to a Telegram data center. It knows
// users with phone numbers, logs them in with a code (and the cloud
// password, by SRP, for a user who set one: password.go), keeps private
// chats (messages, replies, edits, deletes, reactions, read receipts and
// typing), and pushes updates with pts that updates.getDifference can
// replay. Supergroups and broadcast channels have a pts of their own that
// updates.getChannelDifference replays (or answers channelDifferenceTooLong
// past a limit).
package telegramfake

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/telegram/auth"
	"github.com/gotd/td/telegram/dcs"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/gotd/td/tgtest"
	"github.com/gotd/td/tgtest/services/config"
	"github.com/gotd/td/transport"
)

// DC is the one data center the fake serves.
const DC = 2

// LoginCode is the code every sendCode "sends".
const LoginCode = "12345"

// Server is a fake Telegram data center.
type Server struct {
	// Addr is the host:port the MTProto server listens on.
	Addr string

	srv *tgtest.Server
	key *rsa.PrivateKey
	t   Logger

	mu       sync.Mutex
	users    map[int64]*tg.User
	byPhone  map[string]int64
	sessions map[[8]byte]int64        // auth key ID -> logged-in user
	live     map[int64]tgtest.Session // user -> last session seen
	codes    map[string]string        // phone code hash -> phone
	state    map[int64]*account       // per-user pts and message log
	floods   map[uint32]int           // request type -> FLOOD_WAIT seconds to answer once
	failures map[uint32]*tgerr.Error  // request type -> an error to answer once
	synced   map[int64]int            // user -> updates.getState/getDifference calls
	chats    map[int64]*group         // basic groups
	files    map[int64][]byte         // document ID -> content
	photos   map[photoSize][]byte     // a photo's sizes' content
	// passwords are the users' cloud passwords (their SRP verifiers);
	// awaitingPassword the sessions whose sign-in waits for one (auth key
	// ID -> user), srp the exchanges account.getPassword began (by SRP ID).
	passwords        map[int64]*cloudPassword
	awaitingPassword map[[8]byte]int64
	srp              map[int64]*srpSession
	passwordChecks   map[int64]int
	passwordRefusals map[int64]int
	// loggedOut counts each user's sessions ended by auth.logOut.
	loggedOut map[int64]int
	uploads   map[uploadKey]upload
	// uploadTotals are the part counts big uploads named; uploaded counts
	// each user's bytes of file parts.
	uploadTotals map[uploadKey]int
	uploaded     map[int64]int64
	sentMedia    map[int]tg.InputMediaClass // message ID -> the media a client sent
	// read is how far each side of a private chat read; typing the
	// actions each side set (receipts.go).
	read     map[chatKey]int
	typing   map[chatKey][]tg.SendMessageActionClass
	nextFile int64
	nextUser int64
	nextChat int64
	nextMsg  int
	randoms  map[randomKey]int // a sender's random_id -> the message it sent
	// channels are supergroups and broadcast channels; channelSynced
	// counts their getChannelDifference calls.
	channels      map[int64]*channel
	channelSynced map[int64]int
	nextChannel   int64
}

// randomKey is a sent message's random_id, per sender: Telegram answers a
// repeat with the message the first request sent.
type randomKey struct {
	user     int64
	randomID int64
}

// group is a basic group: its title and members.
type group struct {
	title   string
	members []int64
}

// chat is the group as Telegram describes it.
func (g *group) chat(id int64) *tg.Chat {
	return &tg.Chat{ID: id, Title: g.title, Photo: &tg.ChatPhotoEmpty{}, ParticipantsCount: len(g.members), Date: 1, Version: 1}
}

// account is a user's update state: their pts and every update so far
// (with the pts it ended at), which getDifference replays.
type account struct {
	pts     int
	log     []logged
	history map[int64][]*tg.Message // peer user -> messages
}

type logged struct {
	pts    int
	update tg.UpdateClass
}

// Logger takes the fake's errors and notes: a test's *testing.T, or a
// program's log.
type Logger interface {
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// New starts a fake Telegram on loopback; it stops when the test ends.
func New(t testing.TB) *Server {
	s, stop, err := Start(t, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("telegramfake: %v", err)
	}
	t.Cleanup(stop)
	return s
}

// Start starts a fake Telegram listening on addr (host:port, port 0 for
// any), with a new RSA key, reporting to log. stop ends it.
func Start(log Logger, addr string) (s *Server, stop func(), err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("rsa key: %w", err)
	}
	s = &Server{
		key:      key,
		t:        log,
		users:    map[int64]*tg.User{},
		byPhone:  map[string]int64{},
		sessions: map[[8]byte]int64{},
		live:     map[int64]tgtest.Session{},
		codes:    map[string]string{},
		state:    map[int64]*account{},
		floods:   map[uint32]int{},
		failures: map[uint32]*tgerr.Error{},
		randoms:  map[randomKey]int{},
		synced:   map[int64]int{},
		chats:    map[int64]*group{},
		files:    map[int64][]byte{},
		photos:   map[photoSize][]byte{},

		loggedOut: map[int64]int{},

		passwords:        map[int64]*cloudPassword{},
		awaitingPassword: map[[8]byte]int64{},
		srp:              map[int64]*srpSession{},
		passwordChecks:   map[int64]int{},
		passwordRefusals: map[int64]int{},
		uploads:          map[uploadKey]upload{},
		uploadTotals:     map[uploadKey]int{},
		uploaded:         map[int64]int64{},
		sentMedia:        map[int]tg.InputMediaClass{},
		read:             map[chatKey]int{},
		typing:           map[chatKey][]tg.SendMessageActionClass{},
		nextUser:         1000,
		nextChat:         500,

		channels:      map[int64]*channel{},
		channelSynced: map[int64]int{},
		nextChannel:   700,
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	s.Addr = listener.Addr().String()
	tcp := listener.Addr().(*net.TCPAddr)
	cfg := tg.Config{DCOptions: []tg.DCOption{{ID: DC, IPAddress: tcp.IP.String(), Port: tcp.Port, Static: true}}}
	dispatcher := tgtest.NewDispatcher()
	config.NewService(&cfg, &tg.CDNConfig{}).Register(dispatcher)
	s.register(dispatcher)
	s.srv = tgtest.NewServer(tgtest.NewPrivateKey(key), tgtest.UnpackInvoke(dispatcher), tgtest.ServerOptions{
		DC:    DC,
		Codec: transport.Intermediate.Codec,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(ctx, transport.ListenCodec(nil, listener))
	}()
	stop = func() {
		cancel()
		_ = listener.Close()
		<-done
	}
	return s, stop, nil
}

// PublicKeyPEM is the server's RSA public key, as the client's config takes it.
func (s *Server) PublicKeyPEM() string {
	der := x509.MarshalPKCS1PublicKey(&s.key.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: der}))
}

// DCList is the one data center, for telegram.Options.DCList.
func (s *Server) DCList() dcs.List {
	host, port, _ := net.SplitHostPort(s.Addr)
	portNumber, _ := strconv.Atoi(port)
	return dcs.List{Options: []tg.DCOption{{ID: DC, IPAddress: host, Port: portNumber, Static: true}}}
}

// CodeSettings are the auth.sendCode settings a client sends.
func CodeSettings() auth.SendCodeOptions { return auth.SendCodeOptions{} }

// AccessHash is the access hash of a user, as every other user sees it.
func (s *Server) AccessHash(user int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[user].AccessHash
}

// AddUser creates a user with a phone number and returns its ID.
func (s *Server) AddUser(phone, firstName, lastName string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextUser++
	id := s.nextUser
	s.users[id] = &tg.User{ID: id, AccessHash: id * 7919, FirstName: firstName, LastName: lastName, Phone: phone}
	s.byPhone[phone] = id
	s.state[id] = &account{history: map[int64][]*tg.Message{}}
	return id
}

// FloodWait makes the next request of the given type fail with
// FLOOD_WAIT_<seconds>.
func (s *Server) FloodWait(typeID uint32, seconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.floods[typeID] = seconds
}

// FailOnce makes the next request of the given type fail with err.
func (s *Server) FailOnce(typeID uint32, err *tgerr.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[typeID] = err
}

// Type sends text from one user to another, as if typed in a Telegram app,
// and returns the message ID.
func (s *Server) Type(from, to int64, text string) int {
	return s.send(context.Background(), from, to, text, 0)
}

// AddGroup creates a basic group with a title and members and returns its ID.
func (s *Server) AddGroup(title string, members ...int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextChat++
	s.chats[s.nextChat] = &group{title: title, members: members}
	return s.nextChat
}

// TypeInGroup sends text from a member to a basic group, as if typed in a
// Telegram app, and returns the message ID.
func (s *Server) TypeInGroup(from, chat int64, text string) int {
	s.mu.Lock()
	sides := s.groupSidesLocked(chat)
	s.mu.Unlock()
	return s.deliver(context.Background(), from, sides, text, 0)
}

// GroupMessages returns a basic group's messages as a member sees them.
func (s *Server) GroupMessages(user, chat int64) []tg.Message {
	return s.Messages(user, -chat)
}

// Reply sends text from one user to another in reply to a message of
// their chat, as if typed in a Telegram app, and returns the message ID.
func (s *Server) Reply(from, to int64, replyTo int, text string) int {
	return s.send(context.Background(), from, to, text, replyTo)
}

// Syncs is how many times a user's clients asked for their update state
// (updates.getState or getDifference): a client that has asked is
// receiving the user's updates.
func (s *Server) Syncs(user int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced[user]
}

// Messages returns the private chat between two users as the first one
// sees it.
func (s *Server) Messages(user, peer int64) []tg.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tg.Message
	for _, m := range s.state[user].history[peer] {
		out = append(out, *m)
	}
	return out
}

func (s *Server) register(d *tgtest.Dispatcher) {
	d.HandleFunc(tg.AuthSendCodeRequestTypeID, s.handle(s.sendCode))
	d.HandleFunc(tg.AuthSignInRequestTypeID, s.handle(s.signIn))
	d.HandleFunc(tg.AuthLogOutRequestTypeID, s.handle(s.logOut))
	d.HandleFunc(tg.AccountGetPasswordRequestTypeID, s.handle(s.getPassword))
	d.HandleFunc(tg.AuthCheckPasswordRequestTypeID, s.handle(s.checkPassword))
	d.HandleFunc(tg.UsersGetUsersRequestTypeID, s.handle(s.getUsers))
	d.HandleFunc(tg.UpdatesGetStateRequestTypeID, s.handle(s.getState))
	d.HandleFunc(tg.UpdatesGetDifferenceRequestTypeID, s.handle(s.getDifference))
	d.HandleFunc(tg.MessagesSendMessageRequestTypeID, s.handle(s.sendMessage))
	d.HandleFunc(tg.MessagesGetFullChatRequestTypeID, s.handle(s.getFullChat))
	d.HandleFunc(tg.MessagesSendMediaRequestTypeID, s.handle(s.sendMedia))
	d.HandleFunc(tg.UploadSaveFilePartRequestTypeID, s.handle(s.saveFilePart))
	d.HandleFunc(tg.UploadSaveBigFilePartRequestTypeID, s.handle(s.saveBigFilePart))
	d.HandleFunc(tg.MessagesReadHistoryRequestTypeID, s.handle(s.readHistoryRequest))
	d.HandleFunc(tg.MessagesSetTypingRequestTypeID, s.handle(s.setTypingRequest))
	d.HandleFunc(tg.UploadGetFileRequestTypeID, s.handle(s.getFile))
	d.HandleFunc(tg.MessagesEditMessageRequestTypeID, s.handle(s.editMessage))
	d.HandleFunc(tg.MessagesDeleteMessagesRequestTypeID, s.handle(s.deleteMessages))
	d.HandleFunc(tg.MessagesSendReactionRequestTypeID, s.handle(s.sendReaction))
	d.HandleFunc(tg.UpdatesGetChannelDifferenceRequestTypeID, s.handle(s.getChannelDifference))
	d.HandleFunc(tg.ChannelsGetChannelsRequestTypeID, s.handle(s.getChannels))
	d.HandleFunc(tg.ChannelsGetParticipantsRequestTypeID, s.handle(s.getParticipants))
	d.HandleFunc(tg.MessagesGetHistoryRequestTypeID, s.handle(s.getHistory))
	d.HandleFunc(tg.ChannelsDeleteMessagesRequestTypeID, s.handle(s.deleteChannelMessages))
}

// call is one decoded request: who sent it (0 before login) and its body.
type call struct {
	req  *tgtest.Request
	user int64
}

type handlerFunc func(c call) (bin.Encoder, error)

// handle wraps a method: it records the caller's session for pushed updates,
// answers a pending FLOOD_WAIT, and turns a *tgerr.Error into an RPC error.
func (s *Server) handle(h handlerFunc) func(*tgtest.Server, *tgtest.Request) error {
	return func(srv *tgtest.Server, req *tgtest.Request) error {
		typeID, err := req.Buf.PeekID()
		if err != nil {
			return err
		}
		s.mu.Lock()
		user := s.sessions[req.Session.AuthKey.ID]
		if user != 0 {
			s.live[user] = req.Session
		}
		flood := s.floods[typeID]
		delete(s.floods, typeID)
		failure := s.failures[typeID]
		delete(s.failures, typeID)
		s.mu.Unlock()
		if flood > 0 {
			return srv.SendErr(req, tgerr.New(420, fmt.Sprintf("FLOOD_WAIT_%d", flood)))
		}
		if failure != nil {
			return srv.SendErr(req, failure)
		}
		result, err := h(call{req: req, user: user})
		var rpcErr *tgerr.Error
		switch {
		case errors.As(err, &rpcErr):
			return srv.SendErr(req, rpcErr)
		case err != nil:
			return err
		}
		if b, ok := result.(boolResult); ok {
			return srv.SendBool(req, bool(b))
		}
		return srv.SendResult(req, result)
	}
}

type boolResult bool

func (boolResult) Encode(*bin.Buffer) error { return nil }

var errUnauthorized = tgerr.New(401, "AUTH_KEY_UNREGISTERED")

func (s *Server) sendCode(c call) (bin.Encoder, error) {
	var r tg.AuthSendCodeRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byPhone[r.PhoneNumber]; !ok {
		return nil, tgerr.New(400, "PHONE_NUMBER_INVALID")
	}
	hash := fmt.Sprintf("hash-%d", len(s.codes)+1)
	s.codes[hash] = r.PhoneNumber
	return &tg.AuthSentCode{Type: &tg.AuthSentCodeTypeApp{Length: len(LoginCode)}, PhoneCodeHash: hash}, nil
}

func (s *Server) signIn(c call) (bin.Encoder, error) {
	var r tg.AuthSignInRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	phone, ok := s.codes[r.PhoneCodeHash]
	switch {
	case !ok || phone != r.PhoneNumber:
		return nil, tgerr.New(400, "PHONE_CODE_EXPIRED")
	case r.PhoneCode != LoginCode:
		return nil, tgerr.New(400, "PHONE_CODE_INVALID")
	}
	delete(s.codes, r.PhoneCodeHash)
	id := s.byPhone[phone]
	if s.passwords[id] != nil {
		// The code was right; the session now needs the cloud password
		// (account.getPassword, then auth.checkPassword).
		s.awaitingPassword[c.req.Session.AuthKey.ID] = id
		return nil, tgerr.New(401, "SESSION_PASSWORD_NEEDED")
	}
	return s.logInLocked(c, id), nil
}

// logInLocked logs the caller's session in as a user.
func (s *Server) logInLocked(c call, id int64) *tg.AuthAuthorization {
	s.sessions[c.req.Session.AuthKey.ID] = id
	s.live[id] = c.req.Session
	self := *s.users[id]
	self.Self = true
	return &tg.AuthAuthorization{User: &self}
}

// logOut ends the caller's session: its auth key is no longer logged in.
func (s *Server) logOut(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, c.req.Session.AuthKey.ID)
	delete(s.live, c.user)
	s.loggedOut[c.user]++
	return &tg.AuthLoggedOut{}, nil
}

// LoggedOut is how many sessions of a user ended with auth.logOut.
func (s *Server) LoggedOut(user int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loggedOut[user]
}

func (s *Server) getUsers(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UsersGetUsersRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out tg.UserClassVector
	for _, in := range r.ID {
		var id int64
		switch in := in.(type) {
		case *tg.InputUserSelf:
			id = c.user
		case *tg.InputUser:
			// Like Telegram, another user is found only with the access
			// hash the caller was given for them.
			u, ok := s.users[in.UserID]
			if !ok || (in.UserID != c.user && u.AccessHash != in.AccessHash) {
				return nil, tgerr.New(400, "USER_ID_INVALID")
			}
			id = in.UserID
		}
		if u, ok := s.users[id]; ok {
			cp := *u
			cp.Self = id == c.user
			out.Elems = append(out.Elems, &cp)
		}
	}
	return &out, nil
}

func (s *Server) getState(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced[c.user]++
	return &tg.UpdatesState{Pts: s.state[c.user].pts, Date: int(time.Now().Unix())}, nil
}

func (s *Server) getDifference(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UpdatesGetDifferenceRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced[c.user]++
	acc := s.state[c.user]
	state := tg.UpdatesState{Pts: acc.pts, Date: int(time.Now().Unix())}
	var messages []tg.MessageClass
	var others []tg.UpdateClass
	for _, l := range acc.log {
		if l.pts <= r.Pts {
			continue
		}
		if m, ok := l.update.(*tg.UpdateNewMessage); ok {
			messages = append(messages, m.Message)
		} else {
			others = append(others, l.update)
		}
	}
	if len(messages) == 0 && len(others) == 0 {
		return &tg.UpdatesDifferenceEmpty{Date: state.Date}, nil
	}
	return &tg.UpdatesDifference{
		NewMessages:  messages,
		OtherUpdates: others,
		Users:        s.allUsersLocked(c.user),
		Chats:        s.chatsOfLocked(c.user),
		State:        state,
	}, nil
}

func (s *Server) getFullChat(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesGetFullChatRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.chats[r.ChatID]
	if !ok || !slices.Contains(g.members, c.user) {
		return nil, tgerr.New(400, "CHAT_ID_INVALID")
	}
	participants := &tg.ChatParticipants{ChatID: r.ChatID, Version: 1}
	for _, member := range g.members {
		participants.Participants = append(participants.Participants, &tg.ChatParticipant{UserID: member, InviterID: g.members[0], Date: 1})
	}
	return &tg.MessagesChatFull{
		FullChat: &tg.ChatFull{ID: r.ChatID, Participants: participants},
		Chats:    []tg.ChatClass{g.chat(r.ChatID)},
		Users:    s.allUsersLocked(c.user),
	}, nil
}

func (s *Server) sendMessage(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesSendMessageRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	if peer, ok := r.Peer.(*tg.InputPeerChannel); ok {
		return s.sendToChannel(c, peer, r.Message, r.RandomID)
	}
	replyTo := 0
	if reply, ok := r.ReplyTo.(*tg.InputReplyToMessage); ok {
		replyTo = reply.ReplyToMsgID
	}
	sides, err := s.sides(c.user, r.Peer)
	if err != nil {
		return nil, err
	}
	key := randomKey{c.user, r.RandomID}
	s.mu.Lock()
	id, repeat := s.randoms[key]
	s.mu.Unlock()
	if !repeat {
		id = s.deliver(c.req.RequestCtx, c.user, sides, r.Message, replyTo)
	}
	s.mu.Lock()
	s.randoms[key] = id
	pts := s.state[c.user].pts
	s.mu.Unlock()
	return &tg.UpdateShortSentMessage{Out: true, ID: id, Pts: pts, PtsCount: 1, Date: int(time.Now().Unix())}, nil
}

// send stores a private message in both users' histories; see deliver.
func (s *Server) send(ctx context.Context, from, to int64, text string, replyTo int) int {
	return s.deliver(ctx, from, []side{
		{owner: from, peer: &tg.PeerUser{UserID: to}, key: to},
		{owner: to, peer: &tg.PeerUser{UserID: from}, key: from},
	}, text, replyTo)
}

// side is one account's view of a conversation: the peer its messages
// name and the key of its history.
type side struct {
	owner int64
	peer  tg.PeerClass
	key   int64
}

// groupSidesLocked are the members' views of a basic group (history key
// -chat).
func (s *Server) groupSidesLocked(chat int64) []side {
	var out []side
	for _, member := range s.chats[chat].members {
		out = append(out, side{owner: member, peer: &tg.PeerChat{ChatID: chat}, key: -chat})
	}
	return out
}

// deliver stores a message in each side's history, logs an
// updateNewMessage for each with its pts, and pushes them (the sender
// learns of theirs from the call's answer, or when the fake types).
func (s *Server) deliver(ctx context.Context, from int64, sides []side, text string, replyTo int) int {
	return s.deliverWith(ctx, from, sides, text, replyTo, nil, nil)
}

// deliverWith is deliver with set applied to each side's message (nil for
// none), and own given the sender's update (nil for none).
func (s *Server) deliverWith(ctx context.Context, from int64, sides []side, text string, replyTo int, set func(*tg.Message), own func(tg.UpdateClass)) int {
	s.mu.Lock()
	s.nextMsg++
	id := s.nextMsg
	now := int(time.Now().Unix())
	var pushes []func()
	for _, side := range sides {
		acc := s.state[side.owner]
		msg := &tg.Message{ID: id, Out: side.owner == from, PeerID: side.peer, Date: now, Message: text}
		msg.SetFromID(&tg.PeerUser{UserID: from})
		if replyTo != 0 {
			msg.SetReplyTo(&tg.MessageReplyHeader{ReplyToMsgID: replyTo})
		}
		if set != nil {
			set(msg)
		}
		acc.history[side.key] = append(acc.history[side.key], msg)
		acc.pts++
		update := &tg.UpdateNewMessage{Message: msg, Pts: acc.pts, PtsCount: 1}
		acc.log = append(acc.log, logged{pts: acc.pts, update: update})
		if side.owner == from && own != nil {
			own(update)
		}
		session, online := s.live[side.owner]
		if online && (side.owner != from || ctx == context.Background()) {
			updates := s.updatesLocked(side.owner, update)
			pushes = append(pushes, func() { s.push(session, updates) })
		}
	}
	s.mu.Unlock()
	for _, push := range pushes {
		push()
	}
	return id
}

// sides are the views of the conversation a user's call names.
func (s *Server) sides(user int64, peer tg.InputPeerClass) ([]side, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch peer := peer.(type) {
	case *tg.InputPeerUser:
		target, ok := s.users[peer.UserID]
		if !ok || target.AccessHash != peer.AccessHash {
			return nil, tgerr.New(400, "PEER_ID_INVALID")
		}
		return []side{
			{owner: user, peer: &tg.PeerUser{UserID: peer.UserID}, key: peer.UserID},
			{owner: peer.UserID, peer: &tg.PeerUser{UserID: user}, key: user},
		}, nil
	case *tg.InputPeerChat:
		g, ok := s.chats[peer.ChatID]
		if !ok || !slices.Contains(g.members, user) {
			return nil, tgerr.New(400, "CHAT_ID_INVALID")
		}
		return s.groupSidesLocked(peer.ChatID), nil
	}
	return nil, tgerr.New(400, "PEER_ID_INVALID")
}

// updatesLocked wraps updates for a user with the users and chats they name.
func (s *Server) updatesLocked(owner int64, updates ...tg.UpdateClass) *tg.Updates {
	return &tg.Updates{Updates: updates, Users: s.allUsersLocked(owner), Chats: s.chatsOfLocked(owner), Date: int(time.Now().Unix())}
}

// chatsOfLocked are the basic groups and channels a user is a member of.
func (s *Server) chatsOfLocked(user int64) []tg.ChatClass {
	out := s.channelsOfLocked(user)
	for id, g := range s.chats {
		if slices.Contains(g.members, user) {
			out = append(out, g.chat(id))
		}
	}
	return out
}

// push sends updates the server originates to a session, with a message ID
// of the server-message type (a client drops any other); tgtest's own
// SendUpdates would drop the users the updates name.
func (s *Server) push(session tgtest.Session, updates *tg.Updates) {
	if err := s.srv.Send(context.Background(), session, tgtest.MessageFromServer, updates); err != nil {
		s.t.Logf("telegramfake: pushing updates: %v", err)
	}
}

func (s *Server) allUsersLocked(self int64) []tg.UserClass {
	out := make([]tg.UserClass, 0, len(s.users))
	for id, u := range s.users {
		cp := *u
		cp.Self = id == self
		out = append(out, &cp)
	}
	return out
}
