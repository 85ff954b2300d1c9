package routing

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A Router served without Run refuses online and says why in its log.
func TestOnlineRefusedWithoutRun(t *testing.T) {
	var logs lockedBuffer
	r, err := New(Config{Node: "n1", Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"online","user_id":"alice"}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil || !strings.Contains(string(b), `"code":"internal"`) {
		t.Fatalf("got %s, %v; want error internal", b, err)
	}
	if !strings.Contains(logs.String(), "Router.Run has not been called") {
		t.Errorf("log does not name Router.Run:\n%s", logs.String())
	}
}

func TestTokenLeewayDefault(t *testing.T) {
	r, err := New(Config{Node: "n1", TokenLeeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.TokenLeeway != 0 {
		t.Errorf("TokenLeeway -1 became %v, want 0 (none)", r.cfg.TokenLeeway)
	}
}
