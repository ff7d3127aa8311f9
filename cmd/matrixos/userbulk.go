package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
)

// addBulk creates the accounts listed in file ("-" for stdin), all or
// none, and writes the generated passwords to output ("-" for stdout; a
// file is created, readable by its owner only, and must not exist).
func addBulk(ctx context.Context, acc *accounts.Service, file, output string, admin, generate bool) error {
	in := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	news, err := readAccountList(in, acc, admin)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// The file for the generated passwords is made before the accounts,
	// so that they cannot exist without a place to write them.
	out := io.WriteCloser(nopCloser{os.Stdout})
	if generate && output != "-" {
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		out = f
	}
	defer out.Close()
	start := time.Now()
	created, err := acc.CreateUsers(ctx, news, generate)
	if err != nil {
		// No account exists, so the empty password file goes: it would
		// refuse the next run's --output.
		if generate && output != "-" {
			out.Close()
			os.Remove(output)
		}
		return err
	}
	took := time.Since(start)
	if generate {
		if err := writePasswords(out, created); err != nil {
			return fmt.Errorf("the accounts were created, but their generated passwords could not be written: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "created %d accounts in %v\n", len(created), took.Round(time.Millisecond))
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// readAccountList reads a line "NAME [PASSWORD]" per account: NAME is a
// localpart or a user ID of this server, PASSWORD the rest of the line
// after the blanks that follow NAME (at least 8 characters); empty lines
// and lines starting with # are skipped.
func readAccountList(in io.Reader, acc *accounts.Service, admin bool) ([]accounts.NewAccount, error) {
	var news []accounts.NewAccount
	sc := bufio.NewScanner(in)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, password := strings.TrimLeft(text, " \t"), ""
		if i := strings.IndexAny(name, " \t"); i >= 0 {
			name, password = name[:i], strings.TrimLeft(name[i:], " \t")
		}
		uid, err := acc.ParseLocalUser(name)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if password != "" && len(password) < 8 {
			return nil, fmt.Errorf("line %d: the password of %s must have at least 8 characters", line, uid)
		}
		news = append(news, accounts.NewAccount{Localpart: uid.Localpart(), Password: password, Admin: admin})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(news) == 0 {
		return nil, fmt.Errorf("no accounts listed")
	}
	return news, nil
}

// writePasswords writes "USER_ID PASSWORD" for each generated password
// to out, which it closes.
func writePasswords(out io.WriteCloser, created []accounts.CreatedAccount) error {
	bw := bufio.NewWriter(out)
	for _, c := range created {
		if c.Password != "" {
			fmt.Fprintf(bw, "%s %s\n", c.UserID, c.Password)
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return out.Close()
}
