package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSecret: a secret is not "whsec_" followed by the base64 of a key.
var ErrSecret = errors.New("webhook: secret must be whsec_ followed by the base64 of the key")

// secretPrefix starts every Standard Webhooks secret.
const secretPrefix = "whsec_"

// ParseSecret decodes a Standard Webhooks secret ("whsec_" + base64 of the
// key, as WEBHOOK_SECRET holds it) into the HMAC key. It wraps ErrSecret
// when s is malformed or the key is shorter than 16 bytes.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), secretPrefix)
	if !ok {
		return nil, ErrSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, ErrSecret
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("%w (of at least 16 bytes)", ErrSecret)
	}
	return key, nil
}

// Sign returns the webhook-signature header value of one attempt:
// "v1," + base64(HMAC-SHA256(key, id + "." + ts + "." + body)), as
// Standard Webhooks 1.0 defines it.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
