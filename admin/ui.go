package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The dashboard: one page, three files, no build step and nothing from
// another origin. app.js polls GET /api/v1/overview and calls the rest of the
// API with relative URLs, so the page works behind a reverse proxy that mounts
// the admin listener under a prefix.
//
//go:embed ui
var uiFiles embed.FS

// uiContentTypes are the content types of the files in ui/, by extension. A
// file with another extension is not served.
var uiContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// uiAsset is one file of the dashboard, read once.
type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

// uiHandler serves the dashboard: ui/index.html at "/" (and "/index.html")
// and every other file of ui/ at "/<name>". Any other path is a 404 and any
// method but GET and HEAD a 405, both with the API's error body.
//
// Every response forbids what the page does not need: scripts, styles,
// images and connections from other origins, inline scripts and styles
// (Content-Security-Policy: default-src 'self'), content sniffing, and
// framing by another page. Cache-Control: no-cache and an ETag make a browser
// revalidate, so a new binary's page is never mixed with an old app.js.
//
// It is safe for concurrent use.
func uiHandler() http.Handler {
	assets := map[string]uiAsset{}
	err := fs.WalkDir(uiFiles, "ui", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := uiContentTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		body, err := uiFiles.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		assets["/"+name[len("ui/"):]] = uiAsset{
			body:        body,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("admin: reading the embedded dashboard: " + err.Error()) // impossible: embed.FS
	}
	assets["/"] = assets["/index.html"]

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			uiError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method "+r.Method+" not allowed")
			return
		}
		a, ok := assets[r.URL.Path]
		if !ok {
			uiError(w, http.StatusNotFound, "NOT_FOUND", "no such page: "+r.URL.Path)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

// uiError writes an error in the API's shape: {"code": ..., "message": ...}.
func uiError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
