package web_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/web"
)

// clientDir is the @switchboard/client package, relative to this package.
const clientDir = "client"

// TestClientBrowser runs the client package's unit tests
// (client/test/cases.js) in Chromium, with the page's own origin serving
// the package files.
func TestClientBrowser(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/client/", http.StripPrefix("/client/", http.FileServer(http.Dir(clientDir))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := openPage(t, startBrowser(t), "client", srv.URL)
	failures := run(p, "running client/test/cases.js", chromedp.Evaluate[[]string](
		`import("/client/test/cases.js").then((m) => m.runAll())`, chromedp.EvalAwaitPromise))
	for _, f := range failures {
		t.Error(f)
	}
	p.checkNoErrors()
}

// TestClientNode runs the client package's tests with `node --test`: the
// shared unit tests and a test against a real `ws` server.
func TestClientNode(t *testing.T) {
	npmInstall(t)
	cmd := exec.Command("node", "--test", "test/node.test.js")
	cmd.Dir = clientDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node --test in web/client: %v\n%s", err, out)
	}
}

// TestClientNodeServer runs client/e2e/server.js in Node against the
// real server binary: the client with the `ws` package, as on Node 18-21.
func TestClientNodeServer(t *testing.T) {
	npmInstall(t)
	bin := buildServer(t)
	addr := freeAddr(t)
	startServer(t, bin, addr)
	cmd := exec.Command("node", "e2e/server.js")
	cmd.Dir = clientDir
	cmd.Env = append(os.Environ(), "SWITCHBOARD_URL=ws://"+addr+"/ws")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node e2e/server.js: %v\n%s", err, out)
	}
}

// TestClientTypes type-checks switchboard.d.ts and the TypeScript examples
// with tsc --noEmit: with the DOM types (tsconfig.json), and without them,
// as a Node-only project compiles (tsconfig.node.json).
func TestClientTypes(t *testing.T) {
	npmInstall(t)
	for _, config := range []string{"tsconfig.json", "tsconfig.node.json"} {
		cmd := exec.Command(filepath.Join("node_modules", ".bin", "tsc"), "--noEmit", "-p", config)
		cmd.Dir = clientDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("tsc --noEmit -p %s in web/client: %v\n%s", config, err, out)
		}
	}
}

var npmOnce struct {
	sync.Once
	out []byte
	err error
}

// npmInstall installs the package's devDependencies (ws, typescript) from
// package-lock.json once per test binary, unless they are there.
func npmInstall(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Node 18 or later, e.g. `apt-get install -y nodejs npm`", tool)
		}
	}
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(clientDir, "node_modules", ".package-lock.json")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = clientDir
		npmOnce.out, npmOnce.err = cmd.CombinedOutput()
	})
	if npmOnce.err != nil {
		t.Fatalf("npm ci in web/client: %v\n%s", npmOnce.err, strings.TrimSpace(string(npmOnce.out)))
	}
}
