package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/assistant"
)

// assistantName is the assistant's display name and its device's name.
const assistantName = "Assistant"

// modelLookupTimeout bounds the lookup of the model server's host name
// at start.
const modelLookupTimeout = 10 * time.Second

// newAssistant builds the assistant, which other packages register
// commands into whether or not it runs.
func (n *Node) newAssistant() {
	opts := assistant.Options{Dir: filepath.Join(n.cfg.DataDir, "assistant"), Log: n.log, RemoteInvites: n.cfg.AssistantRemoteInvites}
	if n.cfg.Assistant && n.cfg.AssistantModelURL != "" {
		model, err := n.assistantModel()
		if err != nil {
			n.log.Error("the assistant's model server is not used; the offline engine answers", "err", err)
		} else {
			opts.Model = model
			n.log.Warn("the assistant sends room content to a model server: it sees the messages of the summaries, answers, translations and drafts it writes (a room can refuse with !assistant settings room model off; an encrypted room must turn it on)",
				"url", n.cfg.AssistantModelURL, "model", n.cfg.AssistantModel)
		}
	}
	n.Assistant = assistant.New(opts)
}

// assistantModel is the OpenAI-compatible engine of the assistant_model
// settings.
func (n *Node) assistantModel() (*assistant.OpenAI, error) {
	var key string
	if path := n.cfg.AssistantAPIKeyFile; path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("assistant_api_key_file: %w", err)
		}
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("assistant_api_key_file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
		}
		key = strings.TrimSpace(string(data))
	}
	// The lookup of the model server's host (for a private one) must not
	// hold the node's start up.
	ctx, cancel := context.WithTimeout(context.Background(), modelLookupTimeout)
	defer cancel()
	client, err := assistant.ModelClient(ctx, n.cfg.AssistantModelURL, n.cfg.AllowPrivateNetworks,
		n.cfg.AssistantModelPrivate, n.cfg.AssistantModelTimeout)
	if err != nil {
		return nil, err
	}
	return assistant.NewOpenAI(assistant.OpenAIOptions{URL: n.cfg.AssistantModelURL, Model: n.cfg.AssistantModel,
		EmbeddingsModel: n.cfg.AssistantEmbeddingsModel, APIKey: key, Stream: n.cfg.AssistantModelStream, Client: client}), nil
}

// startAssistant runs the assistant (unless the assistant setting is off)
// as a client of the client API at baseURL; Shutdown stops it.
func (n *Node) startAssistant(baseURL string) error {
	if !n.cfg.Assistant {
		return nil
	}
	login, err := n.assistantLogin(context.Background())
	if err != nil {
		return err
	}
	login.HomeserverURL = baseURL
	n.stopAssistant = runUntilStopped(func(ctx context.Context) {
		if err := n.Assistant.Run(ctx, login); err != nil {
			n.log.Error("the assistant stopped", "err", err)
		}
	})
	return nil
}

// assistantLogin makes sure the assistant's account exists (without a
// password, so nobody can log in as it) and gives its device a new access
// token.
func (n *Node) assistantLogin(ctx context.Context) (assistant.Login, error) {
	uid := n.Accounts.UserID(assistant.Localpart)
	u, exists, err := n.Accounts.GetUser(ctx, uid)
	if err != nil {
		return assistant.Login{}, fmt.Errorf("assistant account: %w", err)
	}
	if err := n.checkNodeUser(ctx, u, exists); err != nil {
		return assistant.Login{}, fmt.Errorf("%w: turn the assistant setting off", err)
	}
	switch {
	case exists && u.Deactivated:
		return assistant.Login{}, fmt.Errorf("the assistant's account %s is deactivated: turn the assistant setting off", uid)
	case !exists:
		if _, err := n.Accounts.CreateUser(ctx, assistant.Localpart, "", false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
			return assistant.Login{}, fmt.Errorf("create the assistant's account: %w", err)
		}
		if err := n.Accounts.SetProfileField(ctx, uid, "displayname", assistantName); err != nil {
			return assistant.Login{}, fmt.Errorf("assistant's display name: %w", err)
		}
	}
	name := assistantName
	res, err := n.Accounts.NewSession(ctx, uid, assistant.DeviceID, &name, false)
	if err != nil {
		return assistant.Login{}, fmt.Errorf("assistant's session: %w", err)
	}
	return assistant.Login{UserID: uid, DeviceID: res.DeviceID, AccessToken: res.AccessToken}, nil
}

// checkNodeUser checks that u, the account of one of the node's own
// users (accounts.Options.Reserved), is not someone else's: it has no
// password (a user registered it before its localpart was reserved) and
// no application service owns it.
func (n *Node) checkNodeUser(ctx context.Context, u *accounts.User, exists bool) error {
	if !exists {
		return nil
	}
	if u.PasswordHash != "" {
		return fmt.Errorf("%s is a user account with a password, not the node's", u.ID)
	}
	as, _, err := n.Accounts.UserAppservice(ctx, u.ID)
	if err != nil {
		return err
	}
	if as != "" {
		return fmt.Errorf("%s belongs to the application service %s, not the node", u.ID, as)
	}
	return nil
}
