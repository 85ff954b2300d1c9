package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloadCheck is how often, at most, the certificate files are looked
// at again (on a handshake): a renewal (certbot, cert-manager) is served
// within a few seconds, without a restart and without touching live
// connections.
const certReloadCheck = 2 * time.Second

// certReloader serves the certificate of TLS_CERT and TLS_KEY, and loads them
// again when either file's modification time or size changes. A pair that
// fails to load (a renewal half written) keeps the last good one in use and
// is retried on the next check. It is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string    // mtimes and sizes of the files cert was loaded from
	badStamp  string    // those of a pair that failed to load (logged once)
	nextCheck time.Time // no stat before this
}

// newCertReloader loads the pair once: an error here stops the start.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT/TLS_KEY: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	r.nextCheck = time.Now().Add(certReloadCheck)
	return r, nil
}

func (r *certReloader) fileStamp() (string, error) {
	var stamp string
	for _, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("TLS_CERT/TLS_KEY: %w", err)
		}
		stamp += fmt.Sprintf("%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Before(r.nextCheck) {
		return r.cert, nil
	}
	r.nextCheck = now.Add(certReloadCheck)
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp || stamp == r.badStamp {
		return r.cert, nil // a file briefly missing mid-renewal: keep serving
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.badStamp = stamp
		r.log.Error("TLS certificate changed but does not load; keeping the previous one", "cert", r.certFile, "err", err)
		return r.cert, nil
	}
	r.cert, r.stamp = &cert, stamp
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	return r.cert, nil
}

// tlsConfig is the server's TLS configuration: HTTP/1.1 only (a WebSocket
// handshake is an HTTP/1.1 request), TLS 1.2 or later.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: r.getCertificate,
	}
}
