package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA modulus accepted (NIST SP 800-131A).
const minRSABits = 2048

// Algorithm families. The token's alg picks one of them; the key then
// decides which of its algorithms are valid.
var (
	hmacAlgs   = map[string]bool{"HS256": true, "HS384": true, "HS512": true}
	publicAlgs = map[string]bool{
		"RS256": true, "RS384": true, "RS512": true,
		"PS256": true, "PS384": true, "PS512": true,
		"ES256": true, "ES384": true, "ES512": true,
		"EdDSA": true,
	}
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)

// verificationKey is one key with the parser that accepts exactly the
// algorithms its type allows. key is typed: []byte only for the HMAC secret,
// otherwise *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, or a
// jwt.VerificationKeySet of public keys sharing one algorithm.
type verificationKey struct {
	kid     string
	algs    []string
	key     any
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc // returns key; built once so Verify allocates no closure
}

func newVerificationKey(kid string, algs []string, key any, parsers func([]string) *jwt.Parser) *verificationKey {
	return &verificationKey{
		kid:     kid,
		algs:    algs,
		key:     key,
		parser:  parsers(algs),
		keyfunc: func(*jwt.Token) (any, error) { return key, nil },
	}
}

// parserFactory returns a function building parsers with the common
// options plus WithValidMethods(algs).
func parserFactory(common []jwt.ParserOption) func(algs []string) *jwt.Parser {
	return func(algs []string) *jwt.Parser {
		opts := append(slices.Clip(common), jwt.WithValidMethods(algs))
		return jwt.NewParser(opts...)
	}
}

func newHMACKey(secret []byte, parsers func([]string) *jwt.Parser) *verificationKey {
	return newVerificationKey("", []string{"HS256", "HS384", "HS512"}, secret, parsers)
}

// newPublicKey wraps a public key, deriving its algorithms from its type
// and curve; alg, when not empty (a JWK's "alg"), narrows them to one.
// Anything but an RSA (≥2048 bits), ECDSA P-256/384/521 or Ed25519 public
// key is refused, so a symmetric key can never get here.
func newPublicKey(kid string, pub any, alg string, parsers func([]string) *jwt.Parser) (*verificationKey, error) {
	var algs []string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key shorter than %d bits", minRSABits)
		}
		algs = rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			algs = []string{"ES256"}
		case elliptic.P384():
			algs = []string{"ES384"}
		case elliptic.P521():
			algs = []string{"ES512"}
		default:
			return nil, errors.New("ECDSA key on an unsupported curve")
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("malformed Ed25519 key")
		}
		algs = []string{"EdDSA"}
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
	if alg != "" {
		if !slices.Contains(algs, alg) {
			return nil, fmt.Errorf("alg %q does not fit a %s key", alg, keyType(pub))
		}
		algs = []string{alg}
	}
	return newVerificationKey(kid, algs, pub, parsers), nil
}

func keyType(pub any) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// keySet indexes public keys by kid, and by algorithm for tokens without a
// kid (several keys fitting one algorithm become one VerificationKeySet,
// tried in turn).
type keySet struct {
	byKID map[string]*verificationKey
	byAlg map[string]*verificationKey
	size  int
}

func newKeySet(keys []*verificationKey, parsers func([]string) *jwt.Parser) *keySet {
	ks := &keySet{
		byKID: make(map[string]*verificationKey, len(keys)),
		byAlg: make(map[string]*verificationKey),
		size:  len(keys),
	}
	fit := make(map[string][]*verificationKey)
	for _, k := range keys {
		if k.kid != "" {
			if _, dup := ks.byKID[k.kid]; !dup {
				ks.byKID[k.kid] = k
			}
		}
		for _, alg := range k.algs {
			fit[alg] = append(fit[alg], k)
		}
	}
	for alg, ks2 := range fit {
		if len(ks2) == 1 {
			ks.byAlg[alg] = ks2[0]
			continue
		}
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(ks2))}
		for i, k := range ks2 {
			set.Keys[i] = k.key
		}
		ks.byAlg[alg] = newVerificationKey("", []string{alg}, set, parsers)
	}
	return ks
}

// readPEMFile reads every public key or certificate in a PEM file.
func readPEMFile(path string, parsers func([]string) *jwt.Parser) ([]*verificationKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: public key file: %w", err)
	}
	keys, err := parsePEM(data, parsers)
	if err != nil {
		return nil, fmt.Errorf("auth: public key file %s: %w", path, err)
	}
	return keys, nil
}

func parsePEM(data []byte, parsers func([]string) *jwt.Parser) ([]*verificationKey, error) {
	var keys []*verificationKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var pub any
		var err error
		switch {
		case block.Type == "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case block.Type == "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("block %d is a private key; give the public key only", n)
		default:
			return nil, fmt.Errorf("block %d: unsupported PEM type %q", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		k, err := newPublicKey("", pub, "", parsers)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}
