package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchboard/switchboard/auth"
)

func ExampleNew() {
	const secret = "an-example-secret-of-32-bytes-or-more"
	v, err := auth.New(auth.Config{Secret: secret, Audience: "switchboard"})
	if err != nil {
		fmt.Println(err)
		return
	}
	token, err := auth.Mint([]byte(secret), "alice", time.Hour, map[string]any{"aud": "switchboard"})
	if err != nil {
		fmt.Println(err)
		return
	}

	claims, err := v.Verify(context.Background(), token)
	fmt.Println(claims.UserID, err, time.Until(claims.Expiry) > 59*time.Minute)

	_, err = v.Verify(context.Background(), token[:len(token)-1]) // a cut signature
	fmt.Println(errors.Is(err, auth.ErrInvalidToken))

	expired, _ := auth.Mint([]byte(secret), "alice", time.Hour, map[string]any{"aud": "switchboard", "exp": time.Now().Add(-time.Hour).Unix()})
	_, err = v.Verify(context.Background(), expired)
	fmt.Println(errors.Is(err, auth.ErrExpired), errors.Is(err, auth.ErrInvalidToken))
	// Output:
	// alice <nil> true
	// true
	// true true
}

func ExampleMint() {
	// What `switchboard token --sub alice --ttl 1h --secret dev-secret` prints.
	token, err := auth.Mint([]byte("dev-secret"), "alice", time.Hour, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(strings.Count(token, "."), strings.HasPrefix(token, "eyJ"))

	v, _ := auth.New(auth.Config{Secret: "dev-secret"})
	claims, err := v.Verify(context.Background(), token)
	fmt.Println(claims.UserID, err)
	// Output:
	// 2 true
	// alice <nil>
}

func ExampleTokenFromRequest() {
	r := httptest.NewRequest("GET", "/ws/chat?access_token=eyJhbGciOi", nil)
	fmt.Println(auth.TokenFromRequest(r))
	r.Header.Set("Authorization", "Bearer eyJ0eXAiOi")
	fmt.Println(auth.TokenFromRequest(r))
	// Output:
	// eyJhbGciOi
	// eyJ0eXAiOi
}
