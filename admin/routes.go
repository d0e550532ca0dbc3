package admin

import (
	_ "embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed openapi.json
var openapiJSON []byte

// extraRoutes are the endpoints outside the JSON API: metrics and the
// dashboard.
func (s *Server) extraRoutes() []route {
	rs := []route{
		{"GET /metrics", false, s.metricsHandler().ServeHTTP},
	}
	ui := uiHandler().ServeHTTP
	for _, p := range uiPaths() {
		rs = append(rs, route{"GET " + p, false, ui})
	}
	return rs
}

// uiPaths returns the paths the dashboard serves: the page at "/" and
// each of its files. Each is a route of its own, so that an unknown path
// or a wrong method under /api/v1 gets the API's 404 or 405.
func uiPaths() []string {
	paths := []string{"/{$}"}
	entries, _ := fs.ReadDir(uiFiles, "ui")
	for _, e := range entries {
		if _, ok := uiContentTypes[path.Ext(e.Name())]; ok && !e.IsDir() {
			paths = append(paths, "/"+e.Name())
		}
	}
	return paths
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapiJSON)
}
