package admin_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestAdminMedia(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	adm := admin(t, n)
	alice := n.Register("alice")
	up, err := alice.UploadBytes(ctx, []byte("hello, media"), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	mediaID := up.ContentURI.FileID
	download := func() response {
		return call(t, alice, "GET", "/_matrix/client/v1/media/download/localhost/"+mediaID, nil, false)
	}
	if r := download(); r.status != 200 || string(r.body) != "hello, media" {
		t.Fatalf("download: %d %s", r.status, r.body)
	}

	list := call(t, adm, "GET", "/_synapse/admin/v1/users/"+url.PathEscape(string(alice.UserID))+"/media", nil, false).obj(t)
	media := list["media"].([]any)
	if list["total"].(float64) != 1 || media[0].(map[string]any)["media_id"] != mediaID || media[0].(map[string]any)["media_length"].(float64) != 12 {
		t.Fatalf("user media: %v", list)
	}

	if r := call(t, adm, "POST", "/_synapse/admin/v1/media/quarantine/localhost/"+mediaID, map[string]any{}, false); r.status != 200 {
		t.Fatalf("quarantine: %d %s", r.status, r.body)
	}
	if r := download(); r.status == 200 {
		t.Fatal("quarantined media is still served")
	}
	list = call(t, adm, "GET", "/_synapse/admin/v1/users/"+url.PathEscape(string(alice.UserID))+"/media", nil, false).obj(t)
	if by := list["media"].([]any)[0].(map[string]any)["quarantined_by"]; by != string(adm.UserID) {
		t.Fatalf("quarantined_by %v, want %s", by, adm.UserID)
	}
	call(t, adm, "POST", "/_synapse/admin/v1/media/unquarantine/localhost/"+mediaID, map[string]any{}, false)
	if r := download(); r.status != 200 {
		t.Fatalf("download after unquarantine: %d %s", r.status, r.body)
	}

	del := call(t, adm, "DELETE", "/_synapse/admin/v1/media/localhost/"+mediaID, nil, false).obj(t)
	if del["total"].(float64) != 1 {
		t.Fatalf("delete media: %v", del)
	}
	if r := download(); r.status != 404 {
		t.Fatalf("download after delete: %d %s", r.status, r.body)
	}
	want(t, call(t, adm, "DELETE", "/_synapse/admin/v1/media/localhost/"+mediaID, nil, false), 404, "M_NOT_FOUND")
	want(t, call(t, adm, "POST", "/_synapse/admin/v1/media/quarantine/localhost/nope", map[string]any{}, false), 404, "M_NOT_FOUND")
}
