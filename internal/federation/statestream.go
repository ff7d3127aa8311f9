package federation

import (
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// Limits of a /state answer, which the partial-state resync reads as a
// stream: a room's whole state and auth chain (Matrix HQ's held about
// 206,000 events) does not fit MaxResponseBytes or RequestTimeout.
const (
	// MaxStateResponseBytes bounds a /state answer's body.
	MaxStateResponseBytes = 1 << 30
	// StateRequestTimeout bounds a /state request, body included: its
	// events are checked as they are read.
	StateRequestTimeout = 10 * time.Minute
	// maxStreamedEventBytes bounds one event of a streamed answer, the
	// spec's 64 KiB for a PDU with room for insignificant whitespace.
	maxStreamedEventBytes = 2 * rooms.MaxEventBytes
)

// errStateTooLarge refuses a /state answer over its limit.
var errStateTooLarge = errors.New("the answer exceeds the size allowed")

// GetState asks server for the room's state before an event and its auth
// chain (/state) and hands each PDU to each as it is read, in the order
// of the answer (auth_chain set for the events of the auth chain), so
// that no more of the answer than one event is held here at a time.
func (r *RoomRemote) GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(authChain bool, pdu json.RawMessage) error) error {
	resp, err := streamedRequest(ctx, r.Client, federation.RequestParams{
		ServerName:   server,
		Method:       http.MethodGet,
		Path:         federation.URLPath{"v1", "state", roomID},
		Query:        url.Values{"event_id": {string(eventID)}},
		Authenticate: true,
	})
	if err != nil {
		return fmt.Errorf("state from %s: %w", server, err)
	}
	defer resp.Body.Close()
	if err := decodeStatePDUs(resp.Body, MaxStateResponseBytes, each); err != nil {
		return fmt.Errorf("state from %s: %w", server, err)
	}
	return nil
}

// streamedRequest makes a request whose answer is read as a stream (a
// room's state: /state, send_join) under the limits of such an answer,
// StateRequestTimeout and MaxStateResponseBytes, rather than the
// client's. The caller reads and closes the body.
func streamedRequest(ctx context.Context, c *federation.Client, params federation.RequestParams) (*http.Response, error) {
	client := *c
	hc := *client.HTTP
	hc.Timeout = StateRequestTimeout
	client.HTTP = &hc
	params.DontReadBody = true
	_, resp, err := client.MakeFullRequest(ctx, params)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	if resp.ContentLength > MaxStateResponseBytes {
		resp.Body.Close()
		return nil, errStateTooLarge
	}
	return resp, nil
}

// decodeStatePDUs reads a /state answer ({"pdus": [...], "auth_chain":
// [...]}, other keys skipped) token by token and hands each PDU to each,
// a copy it may keep. The body is bounded by maxBytes and each PDU by
// maxStreamedEventBytes.
func decodeStatePDUs(body io.Reader, maxBytes int64, each func(authChain bool, pdu json.RawMessage) error) error {
	return decodeAnswer(body, maxBytes, map[string]bool{"pdus": false, "auth_chain": true}, each, nil)
}

// decodeAnswer reads a JSON object whose big members are arrays of PDUs
// (pduArrays: the key of each, and whether it holds the auth chain)
// token by token, handing each PDU to each, a copy it may keep. Each
// other member is handed to other (skipped when other is nil), which
// must read its value from the decoder. The body is bounded by maxBytes,
// each PDU and each value other reads by maxStreamedEventBytes.
func decodeAnswer(body io.Reader, maxBytes int64, pduArrays map[string]bool, each func(authChain bool, pdu json.RawMessage) error, other func(key string, d *streamDecoder) error) error {
	in := &boundedReader{r: body, total: maxBytes, window: maxStreamedEventBytes}
	dec := jsontext.NewDecoder(in)
	if err := expectKind(dec, '{'); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		in.mark = dec.InputOffset()
		name, err := dec.ReadToken()
		if err != nil {
			return in.wrap(err)
		}
		key := name.String()
		authChain, isPDUs := pduArrays[key]
		in.mark = dec.InputOffset()
		switch {
		case isPDUs:
			err = decodePDUArray(dec, in, authChain, each)
		case other != nil:
			err = in.wrap(other(key, &streamDecoder{dec: dec, in: in}))
		default:
			err = in.wrap(dec.SkipValue())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return in.wrap(err)
	}
	return nil
}

// decodePDUArray reads one array of PDUs, each handed to each.
func decodePDUArray(dec *jsontext.Decoder, in *boundedReader, authChain bool, each func(bool, json.RawMessage) error) error {
	if err := expectKind(dec, '['); err != nil {
		return err
	}
	for dec.PeekKind() != ']' {
		in.mark = dec.InputOffset()
		v, err := dec.ReadValue()
		if err != nil {
			return in.wrap(err)
		}
		if v.Kind() != '{' {
			return fmt.Errorf("a PDU is a JSON %s, not an object", v.Kind())
		}
		if err := each(authChain, json.RawMessage(v.Clone())); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return in.wrap(err)
}

// streamDecoder reads the members of a streamed answer that are not
// arrays of PDUs, each value bounded as a PDU is.
type streamDecoder struct {
	dec *jsontext.Decoder
	in  *boundedReader
}

// value reads the next value whole, a copy the caller may keep.
func (d *streamDecoder) value() (jsontext.Value, error) {
	d.in.mark = d.dec.InputOffset()
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, d.in.wrap(err)
	}
	return v.Clone(), nil
}

// strings reads an array of strings one at a time (a big room's
// servers_in_room is longer than one value may be), keeping the first
// max of them.
func (d *streamDecoder) strings(max int) ([]string, error) {
	if err := expectKind(d.dec, '['); err != nil {
		return nil, err
	}
	var out []string
	for d.dec.PeekKind() != ']' {
		d.in.mark = d.dec.InputOffset()
		tok, err := d.dec.ReadToken()
		if err != nil {
			return nil, d.in.wrap(err)
		}
		if tok.Kind() != '"' {
			return nil, fmt.Errorf("want a JSON string, got %s", tok.Kind())
		}
		if len(out) < max {
			out = append(out, tok.String())
		}
	}
	_, err := d.dec.ReadToken()
	return out, d.in.wrap(err)
}

// expectKind reads the next token, which must open an object or array.
func expectKind(dec *jsontext.Decoder, kind jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != kind {
		return fmt.Errorf("want a JSON %s, got %s", kind, tok.Kind())
	}
	return nil
}

// boundedReader bounds a streamed body in all (total) and past the start
// of the value being read (mark, set by the decoding loop), so that a
// value larger than window fails instead of being buffered whole. Each
// read is at most readAhead bytes, so what the decoder holds past the
// value it reads is bounded too.
type boundedReader struct {
	r      io.Reader
	read   int64
	total  int64
	window int64
	mark   int64
	err    error // the limit hit, if any
}

// readAhead is how far past a value's window the decoder's read-ahead
// may go before the value counts as too large.
const readAhead = 64 << 10

func (b *boundedReader) Read(p []byte) (int, error) {
	switch {
	case b.read > b.total:
		b.err = errStateTooLarge
	case b.read-b.mark > b.window+readAhead:
		b.err = fmt.Errorf("an event of the answer exceeds %d bytes", b.window)
	}
	if b.err != nil {
		return 0, b.err
	}
	if room := b.total - b.read + 1; int64(len(p)) > room {
		p = p[:room] // one byte past the limit tells a body that exceeds it
	}
	if len(p) > readAhead {
		p = p[:readAhead]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

// wrap names the limit hit, when a decoding error is due to one.
func (b *boundedReader) wrap(err error) error {
	if err != nil && b.err != nil && !errors.Is(err, b.err) {
		return fmt.Errorf("%w (%v)", b.err, err)
	}
	return err
}
