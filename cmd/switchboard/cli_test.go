package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// These tests run main itself in a child process (the test binary, see
// TestMainChild), so that exit codes and the split between stdout and stderr
// are what a user sees.

const childArgsVar = "SBTEST_MAIN_ARGS" // not close to any option's variable

// TestMainChild is main in a child process started by runMain; in the test
// run itself it does nothing.
func TestMainChild(t *testing.T) {
	raw := os.Getenv(childArgsVar)
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		panic(err)
	}
	os.Args = append([]string{"switchboard"}, args...)
	main()
	os.Exit(0) // not the test framework's PASS on stdout
}

// mainResult is what a run of the program left.
type mainResult struct {
	code           int
	stdout, stderr string
}

// runMain runs the program with args and exactly the environment env.
func runMain(t *testing.T, env []string, args ...string) mainResult {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", childArgsVar + "=" + string(a)}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := mainResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return res
}

func TestConfigErrors(t *testing.T) {
	cert, key := writeCert(t, "localhost")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string // in the message: the option, the value, an example
	}{
		{"log level", []string{"LOG_LEVEL=verbose"}, nil, []string{`LOG_LEVEL="verbose"`, "debug, info, warn or error", "example: LOG_LEVEL=debug"}},
		{"log format", []string{"LOG_FORMAT=xml"}, nil, []string{`LOG_FORMAT="xml"`, "text or json", "example: LOG_FORMAT=json"}},
		{"origin without scheme", []string{"ALLOWED_ORIGINS=example.com"}, nil, []string{`ALLOWED_ORIGINS="example.com"`, "scheme://host", "example: ALLOWED_ORIGINS=https://"}},
		{"origin with a path", []string{"ALLOWED_ORIGINS=https://a.example,https://b.example/app"}, nil, []string{`"https://b.example/app" is not an Origin`}},
		{"redis url", []string{"REDIS_URL=garbage"}, nil, []string{`REDIS_URL="garbage"`, "no scheme", "example: REDIS_URL=redis://"}},
		{"redis url scheme", []string{"REDIS_URL=http://localhost:6379"}, nil, []string{`REDIS_URL="http://localhost:6379"`, "scheme: http"}},
		{"duration", []string{"SHUTDOWN_TIMEOUT=soon"}, nil, []string{`SHUTDOWN_TIMEOUT="soon"`, "example: SHUTDOWN_TIMEOUT=10s"}},
		{"idle timeout", []string{"HTTP_IDLE_TIMEOUT=0"}, nil, []string{`HTTP_IDLE_TIMEOUT="0"`, "positive"}},
		{"small messages", []string{"MAX_MESSAGE_BYTES=100"}, nil, []string{`MAX_MESSAGE_BYTES="100"`, "at least 512"}},
		{"rate", []string{"RATE_LIMIT=-1"}, nil, []string{`RATE_LIMIT="-1"`, "positive number"}},
		{"bool", []string{"PRESENCE_EVENTS=maybe"}, nil, []string{`PRESENCE_EVENTS="maybe"`, "true or false"}},
		{"demo page", []string{"DEMO_PAGE=off"}, nil, []string{`DEMO_PAGE="off"`, "true or false"}},
		{"heartbeat", []string{"HEARTBEAT_TTL=100ms"}, nil, []string{`HEARTBEAT_TTL="100ms"`, "at least 1s"}},
		{"leeway", []string{"JWT_LEEWAY=-5s"}, nil, []string{`JWT_LEEWAY="-5s"`, "or 0"}},
		{"jwks url", []string{"JWKS_URL=keys.json"}, nil, []string{`JWKS_URL="keys.json"`, "https://"}},
		{"public key file", []string{"JWT_PUBLIC_KEY=/no/such.pem"}, nil, []string{`JWT_PUBLIC_KEY="/no/such.pem"`, "cannot read"}},
		{"addr", []string{"SWITCHBOARD_ADDR=8080"}, nil, []string{`SWITCHBOARD_ADDR="8080"`, "host:port", "example: SWITCHBOARD_ADDR=:8080"}},
		{"metrics addr", []string{"METRICS_ADDR=localhost"}, nil, []string{`METRICS_ADDR="localhost"`, "host:port"}},
		{"tls cert file", []string{"TLS_CERT=/no/cert.pem", "TLS_KEY=" + key}, nil, []string{`TLS_CERT="/no/cert.pem"`}},
		{"tls cert alone", []string{"TLS_CERT=" + cert}, nil, []string{"TLS_CERT and TLS_KEY go together"}},
		{"flag", nil, []string{"--log-level", "loud"}, []string{`--log-level="loud"`, "example: --log-level=debug"}},
		{"two at once", []string{"LOG_LEVEL=verbose", "LOG_FORMAT=xml"}, nil, []string{"LOG_LEVEL", "LOG_FORMAT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runMain(t, tc.env, tc.args...)
			if r.code != 1 {
				t.Errorf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "session:") || strings.Contains(r.stderr, "REDIS_URL: ") {
				t.Errorf("stderr stutters:\n%s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q, want nothing", r.stdout)
			}
		})
	}
}

func TestUnknownVariableNamed(t *testing.T) {
	r := runMain(t, []string{"RATE_LIMT=5", "SWITCHBOARD_PORT=80", "LOG_LEVEL=verbose"})
	for _, w := range []string{"RATE_LIMT", "did you mean RATE_LIMIT?", "SWITCHBOARD_PORT"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
		}
	}
	got := unknownVariables([]string{"RATE_LIMT=5", "PATH=/bin", "HOME=/root", "REDIS_HOST=x", "LOG_LEVEL=info", "JWT_SECRT=x"})
	if len(got) != 2 || !strings.Contains(got[0], "RATE_LIMIT") || !strings.Contains(got[1], "JWT_SECRET") {
		t.Errorf("unknownVariables = %q, want RATE_LIMT and JWT_SECRT named", got)
	}
}

func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"token", "--help"}} {
		r := runMain(t, nil, args...)
		if r.code != 0 || r.stderr != "" || r.stdout == "" {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q; want exit 0 and the help on stdout only", args, r.code, len(r.stdout), r.stderr)
		}
	}
	r := runMain(t, nil, "token", "--help")
	for _, w := range []string{"--sub", "--ttl", "--aud", "--iss", "--secret"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("token --help does not show %s:\n%s", w, r.stdout)
		}
	}
	if regexp.MustCompile(`(?m)(^|\s)-[a-z]`).MatchString(r.stdout) {
		t.Errorf("token --help shows single-dash flags:\n%s", r.stdout)
	}
}

func TestUnknownFlagSaidOnce(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate-limt", "5"}, "unknown flag --rate-limt; did you mean --rate-limit? (see switchboard --help)"},
		{[]string{"--frobnicate"}, "unknown flag --frobnicate (see switchboard --help)"},
		{[]string{"token", "--sbu", "alice"}, "unknown flag --sbu; did you mean --sub? (see switchboard token --help)"},
	} {
		r := runMain(t, nil, tc.args...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1", tc.args, r.code)
		}
		if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want the one line %q", tc.args, r.stderr, tc.want)
		}
	}
}

func TestTokenAudienceAndIssuer(t *testing.T) {
	r := runMain(t, []string{"JWT_SECRET=dev-secret"}, "token", "--sub", "alice", "--aud", "chat-app", "--iss", "https://id.example", "--ttl", "5m")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(strings.TrimSpace(r.stdout), claims, func(*jwt.Token) (any, error) { return []byte("dev-secret"), nil },
		jwt.WithAudience("chat-app"), jwt.WithIssuer("https://id.example"), jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("minted token %q: %v", r.stdout, err)
	}
	if claims["sub"] != "alice" {
		t.Errorf("sub = %v, want alice", claims["sub"])
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	// The test binary has no -X main.version: the version comes from the
	// build information, never empty.
	r := runMain(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "switchboard ") || len(strings.TrimSpace(r.stdout)) <= len("switchboard") {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
}
