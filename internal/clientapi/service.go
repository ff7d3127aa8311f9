package clientapi

import (
	"context"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/delayed"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Service serves the room and event endpoints.
type Service struct {
	db             *storage.DB
	log            *slog.Logger
	accounts       *accounts.Service
	rooms          *rooms.Engine
	serverName     string
	defaultVersion id.RoomVersion

	// InviteBlocked, when set, reports whether invitee refuses invites
	// from inviter (their invite permission config, in accountdata).
	InviteBlocked func(ctx context.Context, invitee, inviter id.UserID) (bool, error)
	// Appservices, when set, answers for the application services: their
	// networks' room directories, their exclusive aliases, and the users
	// and aliases they create when asked.
	Appservices Appservices
	// Delayed, when set, schedules the events that a send or state request
	// asks to delay (MSC4140); unset, such a request is refused.
	Delayed *delayed.Service

	// remote asks other servers about their aliases and directories (nil
	// while federation is off); see UseFederation.
	remote *remoteDirectory
	// remoteRooms joins rooms this node is not in; nil while federation
	// is off.
	remoteRooms RemoteRooms
	// remoteJoins bounds the joins over federation going on.
	remoteJoins remoteJoins
}

// New returns the service.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine, defaultVersion id.RoomVersion) *Service {
	return &Service{db: db, log: log, accounts: acc, rooms: eng, serverName: eng.ServerName(), defaultVersion: defaultVersion}
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	a := s.accounts.Auth
	mux.HandleFunc("POST "+v3+"/createRoom", a(s.createRoom))
	mux.HandleFunc("POST "+v3+"/join/{roomIdOrAlias}", a(s.joinRoomByIDOrAlias))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/join", a(s.joinRoomByID))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/invite", a(s.invite))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/leave", a(s.leave))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/kick", a(s.moderate("kick")))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/ban", a(s.moderate("ban")))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/unban", a(s.moderate("unban")))
	mux.HandleFunc("GET "+v3+"/joined_rooms", a(s.joinedRooms))

	mux.HandleFunc("PUT "+v3+"/rooms/{roomId}/send/{eventType}/{txnId}", a(s.sendMessage))
	mux.HandleFunc("PUT "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", a(s.putState))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", a(s.getStateEvent))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/state", a(s.getState))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/event/{eventId}", a(s.getEvent))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/members", a(s.getMembers))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/joined_members", a(s.getJoinedMembers))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/messages", a(s.getMessages))
	mux.HandleFunc("PUT "+v3+"/rooms/{roomId}/redact/{eventId}/{txnId}", a(s.redact))

	mux.HandleFunc("PUT "+v3+"/directory/room/{roomAlias}", a(s.putAlias))
	mux.HandleFunc("GET "+v3+"/directory/room/{roomAlias}", s.getAlias)
	mux.HandleFunc("DELETE "+v3+"/directory/room/{roomAlias}", a(s.deleteAlias))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/aliases", a(s.getRoomAliases))
	mux.HandleFunc("GET "+v3+"/directory/list/room/{roomId}", s.getVisibility)
	mux.HandleFunc("PUT "+v3+"/directory/list/room/{roomId}", a(s.putVisibility))
	mux.HandleFunc("GET "+v3+"/publicRooms", s.getPublicRooms)
	mux.HandleFunc("POST "+v3+"/publicRooms", a(s.postPublicRooms))

	const v1 = "/_matrix/client/v1"
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/relations/{eventId}", a(s.getRelations))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/relations/{eventId}/{relType}", a(s.getRelations))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a(s.getRelations))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/threads", a(s.getThreads))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/timestamp_to_event", a(s.getTimestampToEvent))
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/context/{eventId}", a(s.getContext))
	mux.HandleFunc("POST "+v3+"/knock/{roomIdOrAlias}", a(s.knock))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/forget", a(s.forget))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/upgrade", a(s.upgradeRoom))
}
