package admin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/protogate/protogate/gateway"
)

// TestClusterAnswers checks /api/v1/cluster, the cluster part of /readyz
// (a missing peer leaves the node ready) and the cluster gauges against
// the document.
func TestClusterAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	gw := gateway.New(gateway.Options{})
	defer gw.Close()
	st := ClusterStatus{
		Name: "gw", Node: "gw-1", Listen: "127.0.0.1:6222", Expected: 3,
		Peers: []string{"gw-2"}, Routes: []string{"nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"},
		Unreachable: []string{"nats-route://127.0.0.1:6224"},
		Leafs:       []ClusterLeaf{{Name: "hub", Addr: "10.0.0.9:7422"}}, LeafRemotes: 1, JetStreamLeader: "gw-2",
	}
	api, err := New(Config{Node: "gw-1", Gateway: gw, Logger: slog.New(slog.DiscardHandler), Cluster: func() ClusterStatus { return st }})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	get := func(path string) (int, []byte) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.Bytes()
	}
	for _, tc := range []struct{ path, doc string }{{"/api/v1/cluster", "/api/v1/cluster"}, {"/readyz", "/readyz"}} {
		code, body := get(tc.path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, code, body)
		}
		checkAgainstSchema(t, doc, "GET "+tc.path, openAPIAnswer(t, doc, "get", tc.doc, "200", "application/json"), decodeJSON(t, body))
		if !strings.Contains(string(body), `"unreachable":["nats-route://127.0.0.1:6224"]`) {
			t.Errorf("%s: %s", tc.path, body)
		}
	}
	_, body := get("/metrics")
	for _, want := range []string{"protogate_cluster_peers 1", "protogate_cluster_nodes_expected 3", "protogate_leaf_connections 1"} {
		if !slices.Contains(strings.Split(string(body), "\n"), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
