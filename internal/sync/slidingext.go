package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// extensionConfig is the request part common to the extensions.
type extensionConfig struct {
	Enabled *bool `json:"enabled"`
	// Lists and Rooms scope a room extension to the rooms of those lists
	// and to those subscribed rooms ("*": all of them); with neither it
	// covers every room the lists and subscriptions select.
	Lists []string `json:"lists"`
	Rooms []string `json:"rooms"`
}

func (c *extensionConfig) enabled() bool { return c != nil && c.Enabled != nil && *c.Enabled }

// toDeviceConfig is the to_device extension's request part: since is the
// next_batch of its last response.
type toDeviceConfig struct {
	extensionConfig
	Since string `json:"since"`
	since Token
}

// threadSubscriptionsConfig is the thread_subscriptions extension's
// request part: limit caps the changes one response carries.
type threadSubscriptionsConfig struct {
	extensionConfig
	Limit *int `json:"limit"`
}

// threadSubscriptionsExtension is the extension's name under MSC4308's
// unstable prefix.
const threadSubscriptionsExtension = "io.element.msc4308.thread_subscriptions"

// Limits of the thread_subscriptions extension: the MSC's default, and
// the most this node sends in one response.
const (
	defaultThreadSubscriptionsLimit = 100
	maxThreadSubscriptionsLimit     = 1000
)

// ThreadSubscriptionChanges are changes to a user's thread subscriptions,
// as the thread_subscriptions extension (MSC4308) sends them: the latest
// state of each thread changed, by room. PrevBatch, when older changes
// were left out, is the token that pages back through them.
type ThreadSubscriptionChanges struct {
	Subscribed   map[id.RoomID]map[id.EventID]ThreadSubscribed   `json:"subscribed,omitempty"`
	Unsubscribed map[id.RoomID]map[id.EventID]ThreadUnsubscribed `json:"unsubscribed,omitempty"`
	PrevBatch    string                                          `json:"prev_batch,omitempty"`
}

// Empty reports whether there are no changes.
func (c ThreadSubscriptionChanges) Empty() bool {
	return len(c.Subscribed) == 0 && len(c.Unsubscribed) == 0 && c.PrevBatch == ""
}

// ThreadSubscribed is a thread the user is subscribed to; BumpStamp orders
// the changes of one thread.
type ThreadSubscribed struct {
	Automatic bool  `json:"automatic"`
	BumpStamp int64 `json:"bump_stamp"`
}

// ThreadUnsubscribed is a thread the user unsubscribed from.
type ThreadUnsubscribed struct {
	BumpStamp int64 `json:"bump_stamp"`
}

// limit is the number of changes one response may carry.
func (c *threadSubscriptionsConfig) limit() int {
	if c.Limit == nil {
		return defaultThreadSubscriptionsLimit
	}
	return min(*c.Limit, maxThreadSubscriptionsLimit)
}

// extensionsConfig are the extensions a request enables; others are off.
type extensionsConfig struct {
	toDevice            *toDeviceConfig
	e2ee                *extensionConfig
	accountData         *extensionConfig
	receipts            *extensionConfig
	typing              *extensionConfig
	threadSubscriptions *threadSubscriptionsConfig
}

// parseExtensions reads the extensions of a request. Unknown extensions
// are ignored, as the MSC lets servers do.
func parseExtensions(raw map[string]json.RawMessage) (extensionsConfig, error) {
	var ext extensionsConfig
	into := map[string]any{
		"e2ee": &ext.e2ee, "account_data": &ext.accountData, "receipts": &ext.receipts, "typing": &ext.typing,
		"to_device": &ext.toDevice, threadSubscriptionsExtension: &ext.threadSubscriptions,
	}
	for name, v := range into {
		b, ok := raw[name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(b, v); err != nil {
			return ext, mxhttp.BadJSON("extensions.%s: %v", name, err)
		}
	}
	if td := ext.toDevice; td != nil {
		since, err := ParseToken(td.Since)
		if err != nil {
			return ext, mxhttp.InvalidParam("extensions.to_device.since: invalid token")
		}
		td.since = since
	}
	if ts := ext.threadSubscriptions; ts != nil && ts.Limit != nil && *ts.Limit < 1 {
		return ext, mxhttp.InvalidParam("extensions.%s.limit must be positive", threadSubscriptionsExtension)
	}
	return ext, nil
}

// extensions fills the enabled extensions from the sync sources: one pass
// on the connection's token for everything but to-device messages (and
// the rooms' unread counts, which come from a source too), one on the
// to_device extension's own token.
func (b *slidingBuild) extensions(ctx context.Context, list []listRoom) error {
	ext := b.req.extensions
	if ext.toDevice != nil && ext.toDevice.enabled() {
		if err := b.toDevice(ctx, ext.toDevice); err != nil {
			return err
		}
	}
	if ts := ext.threadSubscriptions; ts != nil && ts.enabled() {
		if err := b.threadSubscriptions(ctx, ts); err != nil {
			return err
		}
	}
	// A room extension with neither lists nor rooms covers the joined
	// rooms of the window, kept from one response to the next while they
	// stay the same; the sources run on those rooms and on the others
	// that an extension's lists or rooms name.
	scopes := map[string]map[id.RoomID]bool{}
	union := b.joined
	var seen map[id.RoomID]bool
	for name, c := range map[string]*extensionConfig{"account_data": ext.accountData, "receipts": ext.receipts, "typing": ext.typing} {
		if !c.enabled() {
			continue
		}
		if c.Lists == nil && c.Rooms == nil {
			scopes[name] = b.windowJoined()
			continue
		}
		scopes[name] = b.scope(c, list)
		if seen == nil {
			union = slices.Clone(b.joined)
			seen = maps.Clone(b.windowJoined())
		}
		for r := range scopes[name] {
			if !seen[r] {
				seen[r] = true
				union = append(union, r)
			}
		}
	}
	req := b.creq
	req.Joined = union
	if seen != nil || !b.sameRooms {
		for _, r := range union {
			if !b.prev.window[r] {
				req.NewlyJoined[r] = true
			}
		}
	}
	req.Filter = extensionFilter(ext)
	req.Skip = ToDevicePart
	if !ext.e2ee.enabled() {
		req.Skip |= DeviceKeysPart
	}
	resp := &Response{}
	for _, r := range b.joined {
		if b.resp.Rooms[r] != nil {
			// The counts source gives the counts of the rooms in the
			// response, and adds those whose counts changed up to To.
			resp.JoinedRoom(r)
		}
	}
	if err := b.s.fill(ctx, req, resp); err != nil {
		return err
	}
	b.counts(resp)
	if ext.e2ee.enabled() {
		b.e2ee(resp)
	}
	if scope, ok := scopes["account_data"]; ok {
		b.accountData(resp, scope)
	}
	for name, typ := range map[string]string{"receipts": "m.receipt", "typing": "m.typing"} {
		if scope, ok := scopes[name]; ok {
			b.ephemeral(resp, scope, name, typ)
		}
	}
	return nil
}

// extensionFilter is the /sync filter that has the sources fill what the
// enabled extensions ask for and nothing else: no presence (sliding sync
// has no presence extension), account data and ephemeral events as
// enabled, and unread counts without thread notifications, as the MSC
// defines notification_count.
func extensionFilter(ext extensionsConfig) *Filter {
	none := func() *[]string { return &[]string{} }
	f := &Filter{
		Presence: &EventFilter{Types: none()},
		Room: &RoomFilter{
			Timeline:    &RoomEventFilter{UnreadThreadNotifications: true},
			Ephemeral:   &RoomEventFilter{EventFilter: EventFilter{Types: none()}},
			AccountData: &RoomEventFilter{EventFilter: EventFilter{Types: none()}},
		},
	}
	if ext.accountData.enabled() {
		f.Room.AccountData = nil
	} else {
		f.AccountData = &EventFilter{Types: none()}
	}
	types := f.Room.Ephemeral.Types
	if ext.receipts.enabled() {
		*types = append(*types, "m.receipt")
	}
	if ext.typing.enabled() {
		*types = append(*types, "m.typing")
	}
	return f
}

// scope returns the joined rooms a room extension with lists or rooms
// covers.
func (b *slidingBuild) scope(c *extensionConfig, list []listRoom) map[id.RoomID]bool {
	joined := make(map[id.RoomID]bool, len(list))
	for _, lr := range list {
		if lr.membership == "join" {
			joined[lr.room] = true
		}
	}
	out := map[id.RoomID]bool{}
	for r, cfg := range b.configs {
		if joined[r] && slices.ContainsFunc(cfg.lists, func(l string) bool { return slices.Contains(c.Lists, l) || slices.Contains(c.Lists, "*") }) {
			out[r] = true
		}
	}
	for r := range b.next.subscriptions {
		if joined[r] && (slices.Contains(c.Rooms, "*") || slices.Contains(c.Rooms, string(r))) {
			out[r] = true
		}
	}
	return out
}

// fill runs every source on a request.
func (s *Service) fill(ctx context.Context, req *Request, resp *Response) error {
	// Sources are only ever appended: the slices as of now stay valid
	// without a copy.
	s.mu.Lock()
	sources, late := s.sources, s.late
	s.mu.Unlock()
	for _, list := range [...][]Source{sources, late} {
		for _, src := range list {
			if err := src.Fill(ctx, req, resp); err != nil {
				return fmt.Errorf("sync source: %w", err)
			}
		}
	}
	return nil
}

// toDevice delivers the device's to-device messages after the
// extension's since token, which acknowledges (deletes) those before it.
func (b *slidingBuild) toDevice(ctx context.Context, c *toDeviceConfig) error {
	since := c.since
	if since.Pos > b.creq.To.Pos {
		since = Token{initial: true} // from before a restore: start over
	}
	req := &Request{
		User: b.creq.User, Device: b.creq.Device, Since: since, To: b.creq.To, NewlyJoined: map[id.RoomID]bool{},
		Filter: extensionFilter(extensionsConfig{}), Skip: DeviceKeysPart,
	}
	resp := &Response{}
	if err := b.s.fill(ctx, req, resp); err != nil {
		return err
	}
	events := []any{}
	if resp.ToDevice != nil {
		events = resp.ToDevice.Events
	}
	b.resp.Extensions["to_device"] = map[string]any{"next_batch": Token{Pos: b.creq.To.Pos}.String(), "events": events}
	if len(events) > 0 {
		b.resp.news = true
	}
	return nil
}

// threadSubscriptions fills the thread_subscriptions extension with the
// changes to the user's thread subscriptions since the connection's last
// response (all of them on an initial one), the newest first up to the
// limit.
func (b *slidingBuild) threadSubscriptions(ctx context.Context, c *threadSubscriptionsConfig) error {
	if b.s.ThreadSubscriptions == nil {
		return nil
	}
	from := b.creq.Since.Pos
	if b.creq.Since.initial {
		from = 0
	}
	changes, err := b.s.ThreadSubscriptions(ctx, b.creq.User, from, b.creq.To.Pos, c.limit())
	if err != nil {
		return fmt.Errorf("thread subscriptions: %w", err)
	}
	if !changes.Empty() {
		b.resp.Extensions[threadSubscriptionsExtension] = changes
		b.resp.news = true
	}
	return nil
}

// counts copies the unread counts of the response's joined rooms, and
// adds the rooms of the window whose counts changed since the connection
// last had them.
func (b *slidingBuild) counts(resp *Response) {
	if resp.Rooms == nil {
		return
	}
	for roomID, jr := range resp.Rooms.Join {
		if jr.UnreadNotifications == nil || !b.next.window[roomID] {
			continue
		}
		c := *jr.UnreadNotifications
		sent, _ := b.next.rooms.get(roomID)
		r := b.resp.Rooms[roomID]
		if r == nil {
			if c == sent.counts {
				continue
			}
			r = &SlidingRoom{}
			b.resp.Rooms[roomID] = r
		}
		r.NotificationCount, r.HighlightCount = c.NotificationCount, c.HighlightCount
		sent.counts = c
		b.next.rooms.set(roomID, sent)
	}
}

// e2ee fills the e2ee extension: device list changes, the device's
// one-time key counts and unused fallback key types.
func (b *slidingBuild) e2ee(resp *Response) {
	out := map[string]any{
		"device_one_time_keys_count":       resp.DeviceOneTimeKeysCount,
		"device_unused_fallback_key_types": resp.DeviceUnusedFallbackKeyTypes,
	}
	if resp.DeviceOneTimeKeysCount == nil {
		out["device_one_time_keys_count"] = map[string]int{}
	}
	if resp.DeviceUnusedFallbackKeyTypes == nil {
		out["device_unused_fallback_key_types"] = []string{}
	}
	if dl := resp.DeviceLists; dl != nil {
		out["device_lists"] = dl
		b.resp.news = true
	}
	b.resp.Extensions["e2ee"] = out
}

// accountData fills the account_data extension: global account data and
// that of the rooms in scope.
func (b *slidingBuild) accountData(resp *Response, scope map[id.RoomID]bool) {
	out := map[string]any{}
	if resp.AccountData != nil && len(resp.AccountData.Events) > 0 {
		out["global"] = resp.AccountData.Events
	}
	roomData := map[id.RoomID][]any{}
	if resp.Rooms != nil {
		for roomID, jr := range resp.Rooms.Join {
			if scope[roomID] && !jr.AccountData.Empty() {
				roomData[roomID] = jr.AccountData.Events
			}
		}
	}
	if len(roomData) > 0 {
		out["rooms"] = roomData
	}
	if len(out) > 0 {
		b.resp.Extensions["account_data"] = out
		b.resp.news = true
	}
}

// ephemeral fills the receipts or typing extension (name) with the
// ephemeral events of type typ of the rooms in scope.
func (b *slidingBuild) ephemeral(resp *Response, scope map[id.RoomID]bool, name, typ string) {
	if resp.Rooms == nil {
		return
	}
	out := map[id.RoomID]any{}
	for roomID, jr := range resp.Rooms.Join {
		if !scope[roomID] || jr.Ephemeral.Empty() {
			continue
		}
		for _, ev := range jr.Ephemeral.Events {
			if m, ok := ev.(map[string]any); ok && m["type"] == typ {
				out[roomID] = ev
			}
		}
	}
	if len(out) > 0 {
		b.resp.Extensions[name] = map[string]any{"rooms": out}
		b.resp.news = true
	}
}
