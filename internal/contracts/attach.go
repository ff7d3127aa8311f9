package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
)

// StateType is the state event that attaches a contract to a room; the
// state key names the attachment. Content without a module detaches it.
const StateType = "org.matrixos.contract"

// ResultType is the event the contracts user sends with a call's result.
const ResultType = "org.matrixos.contract.result"

// maxEventTypes bounds the event types one attachment runs on.
const maxEventTypes = 32

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Attachment is a contract attached to a room.
type Attachment struct {
	// Name is the attachment's state key.
	Name string `json:"-"`
	// Module is the hex SHA-256 of the module.
	Module string `json:"module"`
	// Events are the event types the contract runs on.
	Events []string `json:"events"`
	// Config is handed to every call as the input's config.
	Config json.RawMessage `json:"config,omitempty"`
}

// ParseAttachment reads an org.matrixos.contract state event's content.
// ok is false when it attaches nothing (no module: a detachment); an
// error says why content naming a module is unusable.
func ParseAttachment(name string, content []byte) (a Attachment, ok bool, err error) {
	var probe struct {
		Module *string `json:"module"`
	}
	if json.Unmarshal(content, &probe) != nil || probe.Module == nil {
		return Attachment{}, false, nil
	}
	if err := json.Unmarshal(content, &a); err != nil {
		return Attachment{}, false, fmt.Errorf("attachment %q: %w", name, err)
	}
	a.Name = name
	switch {
	case !hashRE.MatchString(a.Module):
		return Attachment{}, false, fmt.Errorf("attachment %q: module must be a lowercase hex SHA-256", name)
	case len(a.Events) == 0 || len(a.Events) > maxEventTypes:
		return Attachment{}, false, fmt.Errorf("attachment %q: events must list 1 to %d event types", name, maxEventTypes)
	case slices.Contains(a.Events, ResultType) || slices.Contains(a.Events, StateType):
		return Attachment{}, false, fmt.Errorf("attachment %q: a contract cannot run on %s or %s events", name, ResultType, StateType)
	}
	if len(a.Config) == 0 || bytes.Equal(a.Config, []byte("null")) {
		a.Config = json.RawMessage("{}")
	}
	return a, true, nil
}

// runsOn reports whether the attachment runs on an event type.
func (a Attachment) runsOn(evType string) bool { return slices.Contains(a.Events, evType) }

// Input is what a contract reads with input_get: the event's ID, type,
// sender, state key (state events only), origin_server_ts and content,
// and the attachment's config. Numbers keep their JSON text.
func Input(eventID string, pdu []byte, config json.RawMessage) (map[string]any, error) {
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(pdu))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("event %s: %w", eventID, err)
	}
	in := map[string]any{"event_id": eventID}
	for _, k := range []string{"type", "sender", "state_key", "origin_server_ts", "content"} {
		if v, ok := ev[k]; ok {
			in[k] = v
		}
	}
	var cfg any
	dec = json.NewDecoder(bytes.NewReader(config))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	in["config"] = cfg
	return in, nil
}

// ResultContent is the content of a result event.
type ResultContent struct {
	// Attachment names the attachment (its state key).
	Attachment string `json:"attachment"`
	// Module is the contract's module hash.
	Module string `json:"module"`
	// Input is the event the contract ran on.
	Input string `json:"input"`
	// Result is what the contract set, when it succeeded.
	Result map[string]any `json:"result,omitempty"`
	// Error is why the call failed.
	Error string `json:"error,omitempty"`
	// RelatesTo references the input event for clients.
	RelatesTo map[string]string `json:"m.relates_to"`
}

func resultContent(a Attachment, input string, out *Outcome) ResultContent {
	c := ResultContent{Attachment: a.Name, Module: a.Module, Input: input, Result: out.Result,
		RelatesTo: map[string]string{"rel_type": "m.reference", "event_id": input}}
	if out.Err != nil {
		c.Error = out.Err.Error()
	}
	return c
}

// hasResult reports whether a call produced something to send.
func (o *Outcome) hasResult() bool { return o.Err != nil || o.Result != nil }
