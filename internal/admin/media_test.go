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
	adm := n.RegisterAdmin("admin")
	alice := n.Register("alice")
	up, err := alice.UploadBytes(ctx, []byte("hello, media"), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	mediaID := up.ContentURI.FileID
	download := func() *testnode.Response {
		return testnode.Call(t, alice, "GET", "/_matrix/client/v1/media/download/localhost/"+mediaID, nil)
	}
	if r := download(); r.Status != 200 || string(r.Body) != "hello, media" {
		t.Fatalf("download: %d %s", r.Status, r.Body)
	}

	list := testnode.Call(t, adm, "GET", "/_synapse/admin/v1/users/"+url.PathEscape(string(alice.UserID))+"/media", nil).JSON(t)
	media := list["media"].([]any)
	if list["total"].(float64) != 1 || media[0].(map[string]any)["media_id"] != mediaID || media[0].(map[string]any)["media_length"].(float64) != 12 {
		t.Fatalf("user media: %v", list)
	}

	if r := testnode.Call(t, adm, "POST", "/_synapse/admin/v1/media/quarantine/localhost/"+mediaID, map[string]any{}); r.Status != 200 {
		t.Fatalf("quarantine: %d %s", r.Status, r.Body)
	}
	if r := download(); r.Status == 200 {
		t.Fatal("quarantined media is still served")
	}
	list = testnode.Call(t, adm, "GET", "/_synapse/admin/v1/users/"+url.PathEscape(string(alice.UserID))+"/media", nil).JSON(t)
	if by := list["media"].([]any)[0].(map[string]any)["quarantined_by"]; by != string(adm.UserID) {
		t.Fatalf("quarantined_by %v, want %s", by, adm.UserID)
	}
	testnode.Call(t, adm, "POST", "/_synapse/admin/v1/media/unquarantine/localhost/"+mediaID, map[string]any{}).OK(t)
	if r := download(); r.Status != 200 {
		t.Fatalf("download after unquarantine: %d %s", r.Status, r.Body)
	}

	del := testnode.Call(t, adm, "DELETE", "/_synapse/admin/v1/media/localhost/"+mediaID, nil).JSON(t)
	if del["total"].(float64) != 1 {
		t.Fatalf("delete media: %v", del)
	}
	if r := download(); r.Status != 404 {
		t.Fatalf("download after delete: %d %s", r.Status, r.Body)
	}
	testnode.Call(t, adm, "DELETE", "/_synapse/admin/v1/media/localhost/"+mediaID, nil).Want(t, 404, "M_NOT_FOUND")
	testnode.Call(t, adm, "POST", "/_synapse/admin/v1/media/quarantine/localhost/nope", map[string]any{}).Want(t, 404, "M_NOT_FOUND")
}
