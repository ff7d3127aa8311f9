// Package assistant is the node's private assistant, @assistant:<server>
// (docs/assistant.md): an ordinary Matrix user of the node with its own
// device and end-to-end encryption (mautrix-go's crypto helper with goolm;
// its crypto store is <data>/assistant/assistant.db, files 0600). It talks
// to the node over loopback HTTP with an access token the node issues at
// start, like the in-process bridges of internal/bridges/host: it reads
// only what the client API gives it, never another package's tables.
//
// It joins only the rooms it is invited to (by its own server's users,
// unless Options.RemoteInvites) and leaves when asked. In those rooms it
// answers messages that mention it and messages that start with
// "!assistant"; a message in a thread is answered in the thread. It takes
// requests within a rate per user and per room (internal/ratelimit),
// works on a few at a time and refuses past a bounded queue. It answers
// a member only from the messages sent since their latest join, unless
// the room is unencrypted and its history shared or world-readable.
//
// # Commands
//
// "!assistant <name> <args>" runs the command registered under name;
// "!assistant help" lists them. The built-ins (summary, ask, translate,
// draft, language, log, settings, forget, leave, help) read the
// assistant's own store of what it read in the room since it joined (in
// assistant.db beside the crypto store), and answer through an Engine:
// Offline, or OpenAI (an OpenAI-compatible model server reached through
// ModelClient's SSRF guard; package openaifake is a fake one for tests).
// Other packages add commands from
// internal/node, before or after the assistant starts:
//
//	n.Assistant.Register(myCommand{})
//
// where myCommand implements Command:
//
//	type Command interface {
//		Name() string // one lower-case word: "stats", "mod"
//		Help() string // one line for "!assistant help"
//		Run(ctx context.Context, room id.RoomID, sender id.UserID, args string) (Reply, error)
//	}
//
// args is the rest of the message after the command's name, trimmed. Run
// is called on its own goroutine, one command of a room at a time, with a
// context that ends when the assistant stops. A command decides itself
// who may run it (room power levels, server admins): the assistant only
// checks that the sender is a member of the room, which the node already
// guarantees. The Reply's Text (and optional HTML) is sent back, in the
// asker's thread when there is one, encrypted when the room is; a Reply's
// File (a chart, say) is uploaded (encrypted in an encrypted room) and
// sent as an m.image or m.file. An error from Run is answered as
// "<name>: <error>" and logged. Register refuses a second command of the
// same name and the names of the built-in commands.
package assistant
