package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/switchboard/switchboard/auth"
)

// runToken mints an HS256 token for local development.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "user id (the sub claim); required")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	secret := fs.String("secret", "", "HMAC secret (default: $JWT_SECRET)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: switchboard token --sub USER [--ttl 1h] [--secret S]\n\nMints an HS256 token for local development; the server must run with the same JWT_SECRET.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *secret == "" {
		*secret = getenv("JWT_SECRET")
	}
	if *sub == "" || *secret == "" {
		fs.Usage()
		return errors.New("token: --sub and --secret (or JWT_SECRET) are required")
	}
	tok, err := auth.Mint([]byte(*secret), *sub, *ttl, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
