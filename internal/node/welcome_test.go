package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestWelcomePage: GET / answers a page that says what the node is and how
// to connect a client (it was a JSON 404); other unknown paths stay JSON
// errors.
func TestWelcomePage(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	resp, err := http.Get(n.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"Matrix OS", "<strong>localhost</strong>", "<code>" + n.URL + "</code>", "@name:localhost", "open to anyone"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("welcome page lacks %q:\n%s", want, body)
		}
	}
	resp, err = http.Get(n.URL + "/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nothing-here: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
}

// TestFavicon: GET /favicon.ico, which a browser asks for on every page it
// opens on the node (welcome, sign-in, account), answers an image; it was a
// JSON 404, a failed request in the browser's console on each page.
func TestFavicon(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	resp, err := http.Get(n.URL + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("GET /favicon.ico: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(string(body), "<svg ") {
		t.Errorf("GET /favicon.ico body is not an SVG image: %.80s", body)
	}
}
