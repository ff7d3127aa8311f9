package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
)

// adminTokenEnv names the environment variable that holds a server
// admin's access token for the commands that use the node's admin API.
const adminTokenEnv = "MATRIXOS_ADMIN_TOKEN"

const ledgerRoomUsage = `usage: matrixos ledger enable|disable|status ROOM_ID [--as USER] [--url URL]

Turns a room's ledger on or off (or shows it) through the running node's
admin API, with a server admin's access token in $` + adminTokenEnv + `.
The node sends the room's org.matrixos.ledger state event as --as, or as
the local member with the most power in the room; the room's power levels
decide, and the node refuses when no local member may set it.`

// ledgerRoom runs "matrixos ledger enable|disable|status ROOM_ID".
func ledgerRoom(sub string, args []string, out io.Writer) error {
	var roomID, as, base string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		roomID, args = args[0], args[1:]
	}
	maxArgs := 0
	if roomID == "" {
		maxArgs = 1
	}
	flags, rest, err := parseFlags("ledger "+sub, args, maxArgs, func(fs *flag.FlagSet) {
		if sub != "status" {
			fs.StringVar(&as, "as", "", "send the state event as this local `user` (a member with the power to)")
		}
		fs.StringVar(&base, "url", "", "the node's client API `URL` (default: http:// and the listen address)")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		roomID = rest[0]
	}
	if !strings.HasPrefix(roomID, "!") {
		return errors.New(ledgerRoomUsage)
	}
	token := strings.TrimSpace(os.Getenv(adminTokenEnv))
	if token == "" {
		return fmt.Errorf("set %s to a server admin's access token (log in as an admin, see docs/ledger.md)\n%s", adminTokenEnv, ledgerRoomUsage)
	}
	if base == "" {
		cfg, _, err := config.Load(flags, false)
		if err != nil {
			return err
		}
		base = listenURL(cfg.Listen)
	}
	method, body := http.MethodGet, []byte(nil)
	if sub != "status" {
		method = http.MethodPut
		if body, err = json.Marshal(map[string]any{"enabled": sub == "enable", "sender": as}); err != nil {
			return err
		}
	}
	path := strings.Replace(ledger.AdminRoomPath, "{roomId}", url.PathEscape(roomID), 1)
	var got ledger.RoomLedger
	if err := adminRequest(method, strings.TrimRight(base, "/")+path, token, body, &got); err != nil {
		return err
	}
	printRoomLedger(out, sub, &got)
	return nil
}

// listenURL is the client API's URL on this machine for a listen address
// (a wildcard host is reached on the loopback address).
func listenURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// adminRequest makes one admin API request and decodes its answer into out,
// or returns the node's error.
func adminRequest(method, u, token string, body []byte, out any) error {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("reach the node (is it running? pass --url): %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the node's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code  string `json:"errcode"`
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Code != "" {
			return fmt.Errorf("the node refused (%d %s): %s", resp.StatusCode, e.Code, e.Error)
		}
		return fmt.Errorf("the node answered %s: %s", resp.Status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the node's answer: %w", err)
	}
	return nil
}

// printRoomLedger says what the room's ledger is after the command.
func printRoomLedger(out io.Writer, sub string, r *ledger.RoomLedger) {
	state := map[bool]string{true: "on", false: "off"}[r.Enabled]
	switch {
	case sub == "status" && r.EventID == "":
		fmt.Fprintf(out, "ledger of %s: off (no %s state event)\n", r.RoomID, ledger.StateType)
	case sub == "status" || r.Unchanged:
		fmt.Fprintf(out, "ledger of %s: %s (set by %s in %s)\n", r.RoomID, state, r.Sender, r.EventID)
	default:
		fmt.Fprintf(out, "ledger of %s turned %s: %s sent %s\n", r.RoomID, state, r.Sender, r.EventID)
	}
	if r.All {
		fmt.Fprintln(out, "note: this node logs every room (ledger: all), whatever the room's state says")
	}
}
