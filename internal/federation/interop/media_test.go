package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
)

// testMedia: media a Matrix OS user uploads downloads through
// Dendrite's authenticated media API (Dendrite fetching it from Matrix OS
// over federation), and media a Dendrite user uploads downloads through
// ours.
func testMedia(t *testing.T, p peers) {
	ctx := context.Background()
	ours, theirs := p.n.Register("alice"), p.d.Register("bob")
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
