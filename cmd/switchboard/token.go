package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/switchboard/switchboard/auth"
)

const tokenUsage = `Usage: switchboard token --sub USER [--ttl 1h] [--aud AUDIENCE] [--iss ISSUER] [--secret S]

Mints an HS256 token for local development; the server must run with the
same JWT_SECRET (and, when it checks them, JWT_AUDIENCE and JWT_ISSUER).

Options:
  --sub USER        user id (the sub claim); required
  --ttl DURATION    lifetime of the token (default 1h)
  --aud AUDIENCE    aud claim (for a server with JWT_AUDIENCE)
  --iss ISSUER      iss claim (for a server with JWT_ISSUER)
  --secret S        HMAC secret (default: $JWT_SECRET)
`

// runToken mints an HS256 token for local development.
func runToken(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	sub := fs.String("sub", "", "")
	ttl := fs.Duration("ttl", time.Hour, "")
	aud := fs.String("aud", "", "")
	iss := fs.String("iss", "", "")
	secret := fs.String("secret", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := io.WriteString(stdout, tokenUsage)
			return err
		}
		return fmt.Errorf("token: %w", flagError(err, []string{"sub", "ttl", "aud", "iss", "secret"}, "switchboard token --help"))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q (see switchboard token --help)", fs.Arg(0))
	}
	if *secret == "" {
		*secret = getenv("JWT_SECRET")
	}
	if *sub == "" || *secret == "" {
		return errors.New("token: --sub and --secret (or JWT_SECRET) are required (see switchboard token --help)")
	}
	extra := map[string]any{}
	if *aud != "" {
		extra["aud"] = *aud
	}
	if *iss != "" {
		extra["iss"] = *iss
	}
	tok, err := auth.Mint([]byte(*secret), *sub, *ttl, extra)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
