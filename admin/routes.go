package admin

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.json
var openapiJSON []byte

// extraRoutes are the endpoints outside the JSON API: metrics and the
// dashboard.
func (s *Server) extraRoutes() []route {
	return []route{
		{"GET /metrics", false, s.metricsHandler().ServeHTTP},
		{"GET /", false, uiHandler().ServeHTTP},
	}
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapiJSON)
}
