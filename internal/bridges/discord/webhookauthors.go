package discord

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
)

// A message sent through a webhook that is not the bridge's (an
// integration such as a CI or RSS feed, another bridge's relay) has no
// Discord user behind it: its author carries the webhook's ID and the name
// and avatar the message was posted with, and Discord answers no profile
// for that ID. Such a message is bridged from a ghost of its own for each
// webhook and name, named and pictured as the message was.

// webhookGhostPrefix starts the network user ID of a webhook author's
// ghost; Discord user IDs are decimal snowflakes, so the two never meet.
const webhookGhostPrefix = "webhook-"

// maxWebhookAuthors bounds the webhook authors remembered for their
// ghosts' profiles; past it the oldest are forgotten (a ghost created
// already keeps its profile).
const maxWebhookAuthors = 1024

// webhookAuthors remembers the profile of each webhook author's ghost
// from the latest message it was seen in, until bridgev2 asks for it.
type webhookAuthors struct {
	mu    sync.Mutex
	order []networkid.UserID
	info  map[networkid.UserID]*discordgo.User
}

// webhookGhostID is the ghost of the author of a message that webhookID
// sent under name: one per webhook and name, so that a relay webhook's
// many senders stay apart.
func webhookGhostID(webhookID, name string) networkid.UserID {
	sum := sha256.Sum256([]byte(name))
	return networkid.UserID(webhookGhostPrefix + webhookID + "-" + hex.EncodeToString(sum[:6]))
}

// remember records the author of a webhook message under its ghost's ID.
func (w *webhookAuthors) remember(ghost networkid.UserID, author *discordgo.User) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.info == nil {
		w.info = make(map[networkid.UserID]*discordgo.User)
	}
	if _, ok := w.info[ghost]; !ok {
		if len(w.order) == maxWebhookAuthors {
			delete(w.info, w.order[0])
			w.order = w.order[1:]
		}
		w.order = append(w.order, ghost)
	}
	w.info[ghost] = author
}

// lookup returns the author last remembered for ghost, or nil.
func (w *webhookAuthors) lookup(ghost networkid.UserID) *discordgo.User {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.info[ghost]
}

// senderOf is who a Discord message is bridged from: its author, or the
// ghost of a foreign webhook's author (see above).
func (c *Client) senderOf(m *discordgo.Message) bridgev2.EventSender {
	if m.WebhookID == "" {
		return c.sender(m.Author.ID)
	}
	ghost := webhookGhostID(m.WebhookID, m.Author.Username)
	c.webhookAuthors.remember(ghost, m.Author)
	return bridgev2.EventSender{Sender: ghost}
}

// webhookAuthorInfo is the profile of a webhook author's ghost: the name
// and avatar of the message it was made for (nil if forgotten, which
// leaves the ghost's profile as it is).
func (c *Client) webhookAuthorInfo(ghost networkid.UserID) *bridgev2.UserInfo {
	author := c.webhookAuthors.lookup(ghost)
	if author == nil {
		return nil
	}
	isBot := true
	info := &bridgev2.UserInfo{Name: &author.Username, IsBot: &isBot}
	if author.Avatar != "" {
		avatarURL := author.AvatarURL("256")
		info.Avatar = &bridgev2.Avatar{
			ID:  networkid.AvatarID(author.ID + "/" + author.Avatar),
			Get: func(ctx context.Context) ([]byte, error) { return c.connector.download(ctx, avatarURL, maxAvatarBytes) },
		}
	}
	return info
}

// isWebhookGhost reports whether a ghost is a webhook author's.
func isWebhookGhost(ghost networkid.UserID) bool {
	return strings.HasPrefix(string(ghost), webhookGhostPrefix)
}
