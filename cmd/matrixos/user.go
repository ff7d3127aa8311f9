package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage"
)

func user(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: matrixos user add|add-bulk|list|reset-password|deactivate ...")
	}
	sub, args := args[0], args[1:]
	// The user name comes first or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	var admin, initData, generate bool
	var passwordFile, output string
	maxArgs := 0
	if name == "" {
		maxArgs = 1
	}
	flags, rest, err := parseFlags("user "+sub, args, maxArgs, func(fs *flag.FlagSet) {
		fs.BoolVar(&admin, "admin", false, "make the user a server admin")
		fs.StringVar(&passwordFile, "password-file", "", "read the password from this file (- for stdin) instead of prompting")
		fs.BoolVar(&initData, "init", false, "create the data directory and database if there are none yet")
		if sub == "add-bulk" {
			fs.BoolVar(&generate, "generate-passwords", false, "give the accounts listed without a password a generated one")
			fs.StringVar(&output, "output", "-", "where the generated passwords are written, a line \"USER_ID PASSWORD\" each (- for stdout)")
		}
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		name = rest[0]
	}
	if sub == "list" && name != "" {
		return fmt.Errorf("unexpected argument %q: user list takes no name", name)
	}
	cfg, _, err := config.Load(flags, initData)
	if err != nil {
		return err
	}
	if !initData {
		if err := requireData(cfg); err != nil {
			return err
		}
	}
	ctx := context.Background()
	log := node.NewLogger(cfg, io.Discard)
	db, err := node.OpenDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	acc := accounts.New(db, log, node.AccountsOptions(cfg))
	needName := func() error {
		if name == "" {
			return fmt.Errorf("usage: matrixos user %s NAME", sub)
		}
		return nil
	}
	switch sub {
	case "add":
		if err := needName(); err != nil {
			return err
		}
		pw, err := readPassword(passwordFile, true)
		if err != nil {
			return err
		}
		uid, err := acc.ParseLocalUser(name)
		if err != nil {
			return err
		}
		uid, err = acc.CreateUser(ctx, uid.Localpart(), pw, admin)
		if err != nil {
			return err
		}
		fmt.Printf("created %s%s\n", uid, map[bool]string{true: " (admin)", false: ""}[admin])
	case "add-bulk":
		if name == "" {
			return errors.New("usage: matrixos user add-bulk FILE (- for stdin): a line \"NAME [PASSWORD]\" per account")
		}
		return addBulk(ctx, acc, name, output, admin, generate)
	case "list":
		users, err := acc.ListUsers(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			flags := []string{}
			if u.IsAdmin {
				flags = append(flags, "admin")
			}
			if u.Deactivated {
				flags = append(flags, "deactivated")
			}
			fmt.Printf("%s\t%s\n", u.ID, strings.Join(flags, ","))
		}
	case "reset-password":
		if err := needName(); err != nil {
			return err
		}
		uid, err := acc.ParseLocalUser(name)
		if err != nil {
			return err
		}
		pw, err := readPassword(passwordFile, true)
		if err != nil {
			return err
		}
		if err := acc.SetPassword(ctx, uid, pw, true, ""); err != nil {
			return err
		}
		fmt.Printf("password of %s changed; its devices were logged out\n", uid)
	case "deactivate":
		if err := needName(); err != nil {
			return err
		}
		uid, err := acc.ParseLocalUser(name)
		if err != nil {
			return err
		}
		if _, ok, err := acc.GetUser(ctx, uid); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("no such user %s", uid)
		}
		if err := acc.Deactivate(ctx, uid, false); err != nil {
			return err
		}
		fmt.Printf("deactivated %s: its devices and access tokens are revoked; a running node makes it leave its rooms at once, a stopped one when it next starts\n", uid)
	default:
		return fmt.Errorf("unknown user command %q", sub)
	}
	return nil
}

// readPassword reads a password from a file, stdin ("-"), or the terminal.
func readPassword(file string, confirm bool) (string, error) {
	var pw string
	switch {
	case file == "-":
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw = strings.TrimRight(line, "\r\n")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		pw = strings.TrimRight(string(b), "\r\n")
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", err
		}
		pw = string(b)
		if confirm {
			fmt.Fprint(os.Stderr, "Again: ")
			b2, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			if err != nil {
				return "", err
			}
			if string(b2) != pw {
				return "", errors.New("passwords do not match")
			}
		}
	default:
		return "", errors.New("no terminal to prompt on: use --password-file FILE (or - for stdin)")
	}
	if len(pw) < 8 {
		return "", errors.New("password must have at least 8 characters")
	}
	return pw, nil
}

// requireData refuses to work on a SQLite database that does not exist:
// run in the wrong directory, an admin command would otherwise create an
// empty node there and report success. --init creates it on purpose.
func requireData(cfg config.Config) error {
	dialect, path, err := storage.ParseDSN(cfg.DatabaseDSN())
	if err != nil || dialect != storage.SQLite {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no Matrix OS database at %s: run this where \"matrixos serve\" keeps its data or pass --data DIR (or --init to create a new node's data there)", path)
	} else if err != nil {
		return err
	}
	return nil
}
