package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestDendriteMedia: media a Matrix OS user uploads downloads through
// Dendrite's authenticated media API (Dendrite fetching it from Matrix OS
// over federation), and media a Dendrite user uploads downloads through
// ours.
func TestDendriteMedia(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	d := testnode.StartDendrite(t, ca)
	n := testnode.StartFederating(t, testnode.SQLite, ca)
	ours, theirs := n.Register("alice"), d.Register("bob")
	for _, tc := range []struct{ uploader, downloader *mautrix.Client }{{ours, theirs}, {theirs, ours}} {
		data := []byte(fmt.Sprintf("a file %s uploaded", tc.uploader.UserID))
		up, err := tc.uploader.UploadBytes(ctx, data, "text/plain")
		if err != nil {
			t.Fatalf("%s uploads: %v", tc.uploader.UserID, err)
		}
		got, err := tc.downloader.DownloadBytes(ctx, up.ContentURI)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s downloads %s: %q, %v; want %q", tc.downloader.UserID, up.ContentURI, got, err, data)
		}
	}
}
