package accountdata

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// tagType is the room account data type that holds a room's tags.
const tagType = "m.tag"

// decodeTags splits m.tag content into its other fields and its tags.
func decodeTags(content json.RawMessage) (map[string]json.RawMessage, map[string]json.RawMessage) {
	top := map[string]json.RawMessage{}
	tags := map[string]json.RawMessage{}
	if len(content) > 0 {
		json.Unmarshal(content, &top)
		if top == nil {
			top = map[string]json.RawMessage{}
		}
		json.Unmarshal(top["tags"], &tags)
		if tags == nil {
			tags = map[string]json.RawMessage{}
		}
	}
	return top, tags
}

func encodeTags(top, tags map[string]json.RawMessage) (json.RawMessage, error) {
	b, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	top["tags"] = b
	return json.Marshal(top)
}

// tagParam reads and checks the path's tag.
func tagParam(r *http.Request) (string, error) {
	tag := r.PathValue("tag")
	if tag == "" || len(tag) > 255 {
		return "", mxhttp.InvalidParam("invalid tag name")
	}
	return tag, nil
}

func (s *Service) getTags(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	content, _, err := s.Get(r.Context(), sess.UserID, roomID, tagType)
	if err != nil {
		return nil, err
	}
	_, tags := decodeTags(content)
	return map[string]any{"tags": tags}, nil
}

func (s *Service) putTag(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	tag, err := tagParam(r)
	if err != nil {
		return nil, err
	}
	body, err := readObject(r)
	if err != nil {
		return nil, err
	}
	var meta struct {
		Order any `json:"order"`
	}
	json.Unmarshal(body, &meta)
	if _, isNum := meta.Order.(float64); meta.Order != nil && !isNum {
		return nil, mxhttp.BadJSON("order must be a number")
	}
	_, err = s.Update(r.Context(), sess.UserID, roomID, tagType, func(old json.RawMessage) (json.RawMessage, bool, error) {
		top, tags := decodeTags(old)
		tags[tag] = body
		b, err := encodeTags(top, tags)
		return b, true, err
	})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) deleteTag(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	tag, err := tagParam(r)
	if err != nil {
		return nil, err
	}
	_, err = s.Update(r.Context(), sess.UserID, roomID, tagType, func(old json.RawMessage) (json.RawMessage, bool, error) {
		top, tags := decodeTags(old)
		if _, ok := tags[tag]; !ok {
			return nil, false, nil
		}
		delete(tags, tag)
		b, err := encodeTags(top, tags)
		return b, true, err
	})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
