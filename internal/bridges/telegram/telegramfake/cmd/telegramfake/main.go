// Command telegramfake runs the Telegram bridge's fake Telegram server on
// loopback, so the bridge can be tried without a Telegram account:
//
//	go run -tags goolm ./internal/bridges/telegram/telegramfake/cmd/telegramfake
//
// It prints the network section to put in the bridge's config.yaml (any
// api_id and api_hash, the fake's data center address, ID and public key),
// the phone number to log in with and the code it accepts. The account has
// one contact, a script: once the bridge has logged in and asks for updates
// it writes a greeting (the chat's room appears with it), answers each text
// message, sends a picture when asked for "photo", and says which file it
// got when sent one. Everything is in memory: after a restart the printed
// key and address change and the bridge must log in again.
//
// It lives beside the fake it runs, under internal/, as a development tool
// that is not part of the matrixos command.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "host:port the fake Telegram listens on (port 0 for any)")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		log.Fatalf("telegramfake: %v", err)
	}
}

// The account to log in with and its scripted contact.
const (
	userPhone    = "+15550100001"
	contactPhone = "+15550100002"
)

// run starts the fake and the contact, prints how to configure the bridge
// and serves until ctx ends.
func run(ctx context.Context, addr string, out io.Writer) error {
	server, stop, err := telegramfake.Start(logger{}, addr)
	if err != nil {
		return err
	}
	defer stop()
	user := server.AddUser(userPhone, "Alex", "Example")
	contact := server.AddUser(contactPhone, "Robin", "Script")
	robin, err := newContact(server, contact, user)
	if err != nil {
		return err
	}
	printSetup(out, server)
	robin.run(ctx)
	return nil
}

func printSetup(out io.Writer, server *telegramfake.Server) {
	fmt.Fprintf(out, `Fake Telegram listening on %s (data center %d).

Set in the network section of <data>/bridges/telegram/config.yaml:

network:
    api_id: 1
    api_hash: 0123456789abcdef0123456789abcdef
    dc_address: %s
    dc_id: %d
    public_key: |
%s
Log in with the phone number %s and the code %s.
Robin Script (%s) writes first once the bridge is logged in; send "photo" for a picture.
Stop with Ctrl-C.
`, server.Addr, telegramfake.DC, server.Addr, telegramfake.DC, indent(server.PublicKeyPEM(), "        "),
		userPhone, telegramfake.LoginCode, contactPhone)
}

// indent puts prefix before each line of text.
func indent(text, prefix string) string {
	var out []byte
	start := true
	for i := 0; i < len(text); i++ {
		if start && text[i] != '\n' {
			out = append(out, prefix...)
		}
		out = append(out, text[i])
		start = text[i] == '\n'
	}
	return string(out)
}

// logger prints the fake's errors and notes on standard error.
type logger struct{}

func (logger) Errorf(format string, args ...any) { log.Printf("error: "+format, args...) }
func (logger) Logf(format string, args ...any)   { log.Printf(format, args...) }
