package federation

import (
	"bufio"
	"context"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"
)

// A state answer (/state, send_join) is written as a stream: its members
// one after the other, each array of events an event at a time as the
// room engine reads them a page at a time, so that the resident holds
// the answer's event IDs, not its events. The bytes are those
// mxhttp.WriteJSON writes for the answer built whole: the members in the
// order of their keys (as an encoded map lists them), each value encoded
// with the same options, no space between; only the Content-Length
// header is missing (the body goes chunked).

// answerMember is one member of a streamed answer: a value, or the events
// of events (their PDU JSON, in order).
type answerMember struct {
	key      string
	value    any
	events   []id.EventID
	isEvents bool
}

// valueMember is a member of an answer with a value.
func valueMember(key string, v any) answerMember { return answerMember{key: key, value: v} }

// eventsMember is a member of an answer listing events.
func eventsMember(key string, events []id.EventID) answerMember {
	return answerMember{key: key, events: events, isEvents: true}
}

// writeAnswer writes the JSON object of members (sorted by key) as a 200
// answer, inside [200, ...] when v1 (send_join v1's form). A failure once
// the answer has begun (the database gone) aborts the connection, so the
// asker sees a broken answer rather than a short one.
func (s *Service) writeAnswer(ctx context.Context, w http.ResponseWriter, v1 bool, members []answerMember) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	err := s.encodeAnswer(ctx, bw, v1, members)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		s.log.Warn("federation: a streamed answer failed", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// encodeAnswer writes the answer's JSON to w.
func (s *Service) encodeAnswer(ctx context.Context, w *bufio.Writer, v1 bool, members []answerMember) error {
	if v1 {
		w.WriteString("[200,")
	}
	w.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			w.WriteByte(',')
		}
		if err := encodeV1(w, m.key); err != nil {
			return err
		}
		w.WriteByte(':')
		if !m.isEvents {
			if err := encodeV1(w, m.value); err != nil {
				return fmt.Errorf("%s: %w", m.key, err)
			}
			continue
		}
		w.WriteByte('[')
		first := true
		err := s.rooms.EachEventJSON(ctx, m.events, func(raw json.RawMessage) error {
			if !first {
				w.WriteByte(',')
			}
			first = false
			return encodeV1(w, raw)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", m.key, err)
		}
		w.WriteByte(']')
	}
	w.WriteByte('}')
	if v1 {
		w.WriteByte(']')
	}
	return nil
}

// encodeV1 encodes v as mxhttp.WriteJSON does (json.Marshal's output).
func encodeV1(w *bufio.Writer, v any) error {
	return jsonv2.MarshalWrite(w, v, json.DefaultOptionsV1())
}
