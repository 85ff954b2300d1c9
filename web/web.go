// Package web serves Switchboard's demo chat page: index.html at "/" and
// its assets under "/static/", all embedded in the binary.
//
// The page talks to the server only through client/switchboard.js, the
// @switchboard/client package (see docs/client.md), served as
// /static/switchboard.js (and, for pages written against earlier versions,
// /static/client.js).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static client/switchboard.js
var files embed.FS

// ContentSecurityPolicy is sent with every response of Handler. Scripts,
// styles and images come only from the page's own origin (no inline script
// or style), and the page may open WebSockets to any host because the
// scheme of ws: and wss: is not covered by 'self' in older browsers.
const ContentSecurityPolicy = "default-src 'self'; " +
	"script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self' ws: wss:; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, read once.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentTypes maps the extensions found in static/ to their media types;
// a file with another extension is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// Handler returns the handler of the demo page. It answers GET and HEAD for
// "/" (index.html) and "/static/{file}"; any other path is 404 and any other
// method 405. Every response carries ContentSecurityPolicy and
// "X-Content-Type-Options: nosniff". Responses are "Cache-Control: no-cache"
// with a strong ETag (a hash of the content), so browsers revalidate and get
// 304 Not Modified until the binary changes. The handler is safe for
// concurrent use.
func Handler() http.Handler {
	assets := make(map[string]asset)
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		assets["/"+name] = asset{
			body:        body,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build defect.
		panic("web: reading embedded files: " + err.Error())
	}
	index, ok := assets["/static/index.html"]
	if !ok {
		panic("web: static/index.html is not embedded")
	}
	// The page has one address, "/".
	delete(assets, "/static/index.html")
	assets["/"] = index
	client, ok := assets["/client/switchboard.js"]
	if !ok {
		panic("web: client/switchboard.js is not embedded")
	}
	delete(assets, "/client/switchboard.js")
	assets["/static/switchboard.js"] = client
	assets["/static/client.js"] = client

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")

		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		// ServeContent answers If-None-Match with 304, HEAD without a
		// body, and Range requests.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
