package webhook_test

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/routing/webhook"
)

// The test vector of the official Standard Webhooks libraries.
func TestSignStandardVector(t *testing.T) {
	key, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		secret string
		ok     bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"  whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", true},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false}, // no prefix
		{"whsec_not base64!", false},
		{"whsec_c2hvcnQ=", false}, // 5 bytes
		{"whsec_", false},
		{"", false},
	} {
		t.Run(tc.secret, func(t *testing.T) {
			_, err := webhook.ParseSecret(tc.secret)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseSecret(%q) error %v, want ok=%v", tc.secret, err, tc.ok)
			}
			if err != nil && !errors.Is(err, webhook.ErrSecret) {
				t.Fatalf("error %v does not wrap ErrSecret", err)
			}
		})
	}
}
