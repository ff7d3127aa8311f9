package accountdata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// maxContentBytes limits one account data object.
const maxContentBytes = mxhttp.MaxBodyBytes

// serverControlled are the types clients may not set through the account
// data API: the server keeps them (m.fully_read through read markers,
// m.push_rules through /pushrules).
var serverControlled = map[string]bool{"m.fully_read": true, "m.push_rules": true}

// Routes registers the account data and tag endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	a := s.accounts.Auth
	mux.HandleFunc("GET "+v3+"/user/{userId}/account_data/{type}", a(s.getGlobal))
	mux.HandleFunc("PUT "+v3+"/user/{userId}/account_data/{type}", a(global(s.put)))
	mux.HandleFunc("GET "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a(inRoom(s.getRoom)))
	mux.HandleFunc("PUT "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a(inRoom(s.put)))
	// MSC3391 deletion, under the MSC's unstable prefix only: it is not
	// in the spec yet.
	const msc3391 = "/_matrix/client/unstable/org.matrix.msc3391"
	mux.HandleFunc("DELETE "+msc3391+"/user/{userId}/account_data/{type}", a(global(s.delete)))
	mux.HandleFunc("DELETE "+msc3391+"/user/{userId}/rooms/{roomId}/account_data/{type}", a(inRoom(s.delete)))
	mux.HandleFunc("GET "+v3+"/user/{userId}/rooms/{roomId}/tags", a(inRoom(s.getTags)))
	mux.HandleFunc("PUT "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", a(inRoom(s.putTag)))
	mux.HandleFunc("DELETE "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", a(inRoom(s.deleteTag)))
}

// ownUser checks that the path's user is the requester.
func ownUser(r *http.Request, sess *accounts.Session) error {
	if id.UserID(r.PathValue("userId")) != sess.UserID {
		return mxhttp.Forbidden("cannot access account data of other users")
	}
	return nil
}

// typeParam reads and checks the path's account data type.
func typeParam(r *http.Request) (string, error) {
	typ := r.PathValue("type")
	if typ == "" || len(typ) > 255 {
		return "", mxhttp.InvalidParam("invalid account data type")
	}
	return typ, nil
}

// readObject reads a request body that must be a JSON object.
func readObject(r *http.Request) (json.RawMessage, error) {
	b, err := mxhttp.ReadBody(r, maxContentBytes)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := mxhttp.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("{}"), nil
	}
	return b, nil
}

func controlledErr(typ string) error {
	return &mxhttp.Error{Status: http.StatusMethodNotAllowed, Code: "M_BAD_JSON",
		Message: fmt.Sprintf("Cannot set %s through this API.", typ)}
}

func (s *Service) getGlobal(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if err := ownUser(r, sess); err != nil {
		return nil, err
	}
	typ, err := typeParam(r)
	if err != nil {
		return nil, err
	}
	if v := s.Virtual[typ]; v != nil {
		return v(sess.UserID), nil
	}
	content, ok, err := s.Get(r.Context(), sess.UserID, "", typ)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("Account data not found.")
	}
	return content, nil
}

func (s *Service) getRoom(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	typ, err := typeParam(r)
	if err != nil {
		return nil, err
	}
	content, ok, err := s.Get(r.Context(), sess.UserID, roomID, typ)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("Room account data not found.")
	}
	return content, nil
}

// dataHandler serves a request on the requester's account data (or room
// tags), global when roomID is empty, once global or inRoom has checked the
// path's user and room.
type dataHandler func(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error)

// global adapts h to the global account data paths.
func global(h dataHandler) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if err := ownUser(r, sess); err != nil {
			return nil, err
		}
		return h(r, sess, "")
	}
}

// inRoom adapts h to the room account data paths.
func inRoom(h dataHandler) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if err := ownUser(r, sess); err != nil {
			return nil, err
		}
		roomID, err := mxhttp.RoomIDParam(r)
		if err != nil {
			return nil, err
		}
		return h(r, sess, roomID)
	}
}

// settableType reads the path's account data type and refuses the types
// the server keeps, for PUT and DELETE.
func settableType(r *http.Request) (string, error) {
	typ, err := typeParam(r)
	if err != nil {
		return "", err
	}
	if serverControlled[typ] {
		return "", controlledErr(typ)
	}
	return typ, nil
}

// delete handles both DELETE endpoints (MSC3391); roomID is empty for
// global data. It answers {} whether or not there was data to delete, and
// refuses the types that PUT refuses.
func (s *Service) delete(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	typ, err := settableType(r)
	if err != nil {
		return nil, err
	}
	if err := s.Delete(r.Context(), sess.UserID, roomID, typ); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

// put handles both PUT endpoints; roomID is empty for global data. An
// empty object deletes the data (MSC3391), as Update explains.
func (s *Service) put(r *http.Request, sess *accounts.Session, roomID id.RoomID) (any, error) {
	typ, err := settableType(r)
	if err != nil {
		return nil, err
	}
	content, err := readObject(r)
	if err != nil {
		return nil, err
	}
	if err := s.Set(r.Context(), sess.UserID, roomID, typ, content); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
