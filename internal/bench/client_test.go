package bench

import (
	"encoding/json"
	"testing"
)

func TestAppendMessage(t *testing.T) {
	for _, size := range []int{64, 100, 512} {
		for _, to := range []string{"", "b12.x9", `we"ird`} {
			b := appendMessage(nil, to, 123456789012, size)
			if to != "" && len(b) != size && len(to) < 20 {
				t.Errorf("size %d to %q: len = %d, want %d", size, to, len(b), size)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("appendMessage produced invalid JSON %s: %v", b, err)
			}
			if to == "" {
				if _, ok := m["to"]; ok {
					t.Errorf("broadcast message has a to: %s", b)
				}
			} else if m["to"] != to {
				t.Errorf("to = %v, want %q", m["to"], to)
			}
			if got, ok := parseTS0(b); !ok || got != 123456789012 {
				t.Errorf("parseTS0(%s) = %d, %v", b, got, ok)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		kind  int
		ts0   int64
		code  string
	}{
		{"stamped message", `{"action":"a","from":"x","pad":"xx","to":"b","ts":1700000000000,"ts0":42,"type":"message"}`, frameMessage, 42, ""},
		{"float re-encoded", `{"ts0":1.5e+11,"type":"message"}`, frameMessage, 150000000000, ""},
		{"spaces", `{"ts0": 7}`, frameMessage, 7, ""},
		{"rate limited", `{"type":"error","code":"rate_limited","message":"slow down"}`, frameError, 0, "rate_limited"},
		{"error without code", `{"type":"error"}`, frameError, 0, "unknown"},
		{"join", `{"type":"join","user_id":"a","action":"b"}`, frameOther, 0, ""},
		{"ack", `{"type":"ack","id":1,"delivered":1}`, frameOther, 0, ""},
		{"user named error", `{"type":"join","user_id":"error","action":"b"}`, frameOther, 0, ""},
		{"bad ts0", `{"ts0":"x"}`, frameOther, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, ts0, code := classify([]byte(tt.frame))
			if kind != tt.kind || ts0 != tt.ts0 || code != tt.code {
				t.Errorf("classify(%s) = %d, %d, %q; want %d, %d, %q", tt.frame, kind, ts0, code, tt.kind, tt.ts0, tt.code)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	frame := []byte(`{"action":"bench","from":"a1.x","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","to":"b1.x","ts":1700000000000,"ts0":123456789012,"type":"message"}`)
	for b.Loop() {
		classify(frame)
	}
}
