package auth

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// discoveryPath is appended to the issuer (OpenID Connect Discovery 1.0 §4).
const discoveryPath = "/.well-known/openid-configuration"

// discover reads the issuer's discovery document and returns its jwks_uri.
// The document's issuer must equal the configured one exactly (§4.3), and
// the JWKS must be served over https unless the issuer itself is http (a
// local Keycloak, a test server).
func (r *remote) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(r.issuer, "/") + discoveryPath
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := r.getJSON(ctx, u, &doc); err != nil {
		return "", err
	}
	if doc.Issuer != r.issuer {
		return "", fmt.Errorf("auth: discovery document at %s names issuer %q, not %q", u, doc.Issuer, r.issuer)
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("auth: discovery document at %s: jwks_uri: %w", u, err)
	}
	if strings.HasPrefix(r.issuer, "https:") {
		if j, _ := url.Parse(doc.JWKSURI); j.Scheme != "https" {
			return "", fmt.Errorf("auth: discovery document at %s: jwks_uri %q is not https", u, doc.JWKSURI)
		}
	}
	return doc.JWKSURI, nil
}
