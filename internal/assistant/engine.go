package assistant

import (
	"context"
	"errors"
)

// Engine writes the assistant's answers from the messages it picked.
// Offline is the default; OpenAI speaks to an OpenAI-compatible model
// server.
type Engine interface {
	// Name says which engine answered, as the assistant tells the room.
	Name() string
	// Summarize sums up msgs (oldest first) in at most about sentences
	// sentences.
	Summarize(ctx context.Context, msgs []Message, sentences int) (string, error)
	// Answer answers question from sources, the room's messages that
	// match it best (best first).
	Answer(ctx context.Context, question string, sources []Message) (string, error)
	// Translate translates text into the language named by target (a
	// code such as "de" or a name).
	Translate(ctx context.Context, text, target string) (string, error)
	// Draft drafts a reply to the conversation in msgs (oldest first),
	// following instruction when not empty.
	Draft(ctx context.Context, msgs []Message, instruction string) (string, error)
}

// ErrNeedsModel is what the offline engine answers for what it cannot do
// without a model server (translation, drafting).
var ErrNeedsModel = errors.New("this needs a model server: the node's admin can set assistant_model_url (docs/assistant.md)")
