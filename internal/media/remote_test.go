package media

import (
	"io"
	"strings"
	"testing"
)

// multipartBody joins parts (each its headers, a blank line and a body)
// with the boundary "b".
func multipartBody(parts ...string) string {
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString("--b\r\n" + p + "\r\n")
	}
	sb.WriteString("--b--\r\n")
	return sb.String()
}

func TestParseDownload(t *testing.T) {
	const meta = "Content-Type: application/json\r\n\r\n{}"
	tests := []struct {
		name        string
		contentType string
		body        string
		wantErr     string
		wantType    string
		wantName    string
		wantBody    string
		wantLoc     string
	}{
		{name: "content", contentType: "multipart/mixed; boundary=b",
			body:     multipartBody(meta, "Content-Type: text/plain\r\nContent-Disposition: inline; filename=\"a.txt\"\r\n\r\nhello"),
			wantType: "text/plain", wantName: "a.txt", wantBody: "hello"},
		{name: "RFC 8187 file name", contentType: "multipart/mixed; boundary=b",
			body:     multipartBody(meta, "Content-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''caf%C3%A9.txt\r\n\r\nx"),
			wantType: "text/plain", wantName: "café.txt", wantBody: "x"},
		{name: "no type or name", contentType: "multipart/mixed; boundary=b",
			body:     multipartBody(meta, "\r\nbytes"),
			wantType: "application/octet-stream", wantBody: "bytes"},
		{name: "location", contentType: "multipart/mixed; boundary=b",
			body:    multipartBody(meta, "Location: https://cdn.example/x\r\n\r\n"),
			wantLoc: "https://cdn.example/x"},
		{name: "not multipart", contentType: "text/plain", body: "hello", wantErr: "not multipart"},
		{name: "no boundary", contentType: "multipart/mixed", body: "hello", wantErr: "not multipart"},
		{name: "no parts", contentType: "multipart/mixed; boundary=b", body: "--b--\r\n", wantErr: "no metadata"},
		{name: "metadata not JSON", contentType: "multipart/mixed; boundary=b",
			body: multipartBody("Content-Type: application/json\r\n\r\nnope", "\r\nx"), wantErr: "not a JSON object"},
		{name: "metadata an array", contentType: "multipart/mixed; boundary=b",
			body: multipartBody("Content-Type: application/json\r\n\r\n[]", "\r\nx"), wantErr: "not a JSON object"},
		{name: "no content part", contentType: "multipart/mixed; boundary=b",
			body: multipartBody(meta), wantErr: "no content part"},
		{name: "location not http", contentType: "multipart/mixed; boundary=b",
			body: multipartBody(meta, "Location: file:///etc/passwd\r\n\r\n"), wantErr: "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, loc, err := parseDownload(tt.contentType, strings.NewReader(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if loc != tt.wantLoc {
				t.Fatalf("location %q, want %q", loc, tt.wantLoc)
			}
			if tt.wantLoc != "" {
				return
			}
			body, err := io.ReadAll(c.body)
			if err != nil || string(body) != tt.wantBody || c.contentType != tt.wantType || c.filename != tt.wantName {
				t.Fatalf("got %q %q %q (%v), want %q %q %q", c.contentType, c.filename, body, err, tt.wantType, tt.wantName, tt.wantBody)
			}
		})
	}
}

// FuzzParseDownload: any answer of another server is parsed or refused,
// never a panic.
func FuzzParseDownload(f *testing.F) {
	f.Add("multipart/mixed; boundary=b", multipartBody("Content-Type: application/json\r\n\r\n{}", "Content-Type: text/plain\r\n\r\nhello"))
	f.Add("multipart/mixed; boundary=b", multipartBody("Content-Type: application/json\r\n\r\n{}", "Location: https://x/y\r\n\r\n"))
	f.Add("multipart/mixed; boundary=\"b\"", "--b\r\n\r\n{\"a\":1}\r\n--b")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		c, _, err := parseDownload(contentType, strings.NewReader(body))
		if err == nil && c != nil {
			io.Copy(io.Discard, c.body)
		}
	})
}
