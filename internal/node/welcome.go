package node

import (
	"context"
	"html/template"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// welcomePage is what a browser pointed at the node shows: what it is and
// how to connect a client.
var welcomePage = template.Must(template.New("welcome").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Matrix OS: {{.ServerName}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.5">
<h1>Matrix OS</h1>
<p>This is <strong>{{.ServerName}}</strong>, a <a href="https://matrix.org">Matrix</a> homeserver
(Matrix OS {{.Version}}). There is nothing to see here in a browser: talk to it with a Matrix client
such as Element, Element X, Cinny or FluffyChat.</p>
<ul>
<li>Homeserver URL: <code>{{.BaseURL}}</code></li>
<li>User IDs here look like <code>@name:{{.ServerName}}</code></li>
<li>Sign-up: {{if .OpenRegistration}}open to anyone{{else if .RegistrationTokens}}with a registration token from an admin{{else}}closed; an admin creates accounts{{end}}</li>
</ul>
</body>
</html>
`))

// favicon is the icon browsers ask for at /favicon.ico, the "[m]" of the
// node's pages. Without it every page a browser opens on the node (this
// one, the sign-in and account pages) logs a failed request in its console.
const favicon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">` +
	`<rect width="32" height="32" rx="6" fill="#0b7a75"/>` +
	`<text x="16" y="22" font-family="monospace" font-size="16" font-weight="bold" fill="#fff" text-anchor="middle">[m]</text>` +
	`</svg>`

// serveFavicon answers GET /favicon.ico with favicon, as SVG, which
// browsers accept there.
func serveFavicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodHead {
		io.WriteString(w, favicon)
	}
}

// serveWelcome answers GET / with welcomePage.
func (n *Node) serveWelcome(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	baseURL := n.cfg.BaseURL()
	if n.cfg.PublicBaseURL == "" && r.Host != "" {
		baseURL = "http://" + r.Host // the address this browser reached
	}
	err := welcomePage.Execute(w, map[string]any{
		"ServerName":         n.cfg.ServerName,
		"Version":            Version,
		"BaseURL":            baseURL,
		"OpenRegistration":   n.cfg.OpenRegistration,
		"RegistrationTokens": n.cfg.RegistrationTokens,
	})
	if err != nil {
		n.log.Debug("write welcome page", "err", err)
	}
}

// commandName is how the banner tells the user to run matrixos again: the
// binary's path, or the go run command when the binary is go run's
// temporary build.
func commandName() string {
	exe := os.Args[0]
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "GOEXPERIMENT=jsonv2 go run ./cmd/matrixos"
	}
	return exe
}

// hasAdmin reports whether any active account is a server admin.
func (n *Node) hasAdmin(ctx context.Context) bool {
	ok, err := n.Accounts.HasActiveAdmin(ctx)
	if err != nil {
		n.log.Warn("look for an admin", "err", err)
		return true // say nothing rather than something wrong
	}
	return ok
}
