package redistest

import (
	"fmt"
	"os"
	"os/exec"
)

// StartExample runs a private redis-server as Start does, for code that has
// no testing.TB: a runnable Example. It returns the server's URL (a
// REDIS_URL) and a function that kills it and removes its directory.
// Restart, Client and Do are not available on it.
func StartExample() (url string, stop func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", nil, fmt.Errorf("redistest: %s", notFound)
	}
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return "", nil, err
	}
	s := &Server{base: dir}
	if err := s.startFresh(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	return s.URL(), func() { s.Stop(); _ = os.RemoveAll(dir) }, nil
}
