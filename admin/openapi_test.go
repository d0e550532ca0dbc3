package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

// The tests of openapi.json: the document must list exactly the routes the
// server serves, and its schemas must describe what the handlers answer.

// openAPIMethods are the operations a path item may hold.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI parses the embedded document, the one GET /api/v1/openapi.json
// serves.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// jsonObj returns v[key] as a JSON object, or nil.
func jsonObj(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	o, _ := m[key].(map[string]any)
	return o
}

// jsonPointer follows a "#/..." JSON pointer in doc.
func jsonPointer(doc map[string]any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("%s: only local references", ref)
	}
	var v any = doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not in an object", ref, tok)
		}
		if v, ok = m[tok]; !ok {
			return nil, fmt.Errorf("%s: no %q", ref, tok)
		}
	}
	return v, nil
}

// openAPIDeref returns v, or what it refers to when it is {"$ref": ...}.
func openAPIDeref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		r, err := jsonPointer(doc, ref)
		if err != nil {
			t.Fatal(err)
		}
		m, _ = r.(map[string]any)
	}
	return m
}

// jsonDuplicateKeys returns the keys that occur twice in one object of the
// JSON document b, which encoding/json would silently merge.
func jsonDuplicateKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var dups []string
	var value func(path string) error
	value = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					dups = append(dups, path+"/"+key)
				}
				seen[key] = true
				if err := value(path + "/" + key); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := value(path + "/" + strconv.Itoa(i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return dups, value("")
}

// openAPIOperation returns the OpenAPI method and path of a ServeMux
// pattern, such as "GET /api/v1/clients/{id}". The wildcards are the same
// but for {$}, which anchors a path that ends in "/", so that "/{$}" is
// "/"; a pattern that matches a subtree has no OpenAPI path.
func openAPIOperation(pattern string) (string, error) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || method == "" {
		return "", fmt.Errorf("%s: the pattern has no method, so it serves any", pattern)
	}
	if p, ok := strings.CutSuffix(path, "{$}"); ok {
		return method + " " + p, nil
	}
	if strings.HasSuffix(path, "/") || strings.Contains(path, "...}") {
		return "", fmt.Errorf("%s: the pattern matches a subtree, which openapi.json cannot describe", pattern)
	}
	return method + " " + path, nil
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", v)
	}
	if dups, err := jsonDuplicateKeys(openapiJSON); err != nil || len(dups) > 0 {
		t.Errorf("duplicate keys %v (%v)", dups, err)
	}

	// Every $ref resolves.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, err := jsonPointer(doc, ref); err != nil {
					t.Errorf("%s: %v", path, err)
				}
			}
			for k, x := range v {
				walk(path+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(path+"/"+strconv.Itoa(i), x)
			}
		}
	}
	walk("#", doc)

	if s := jsonObj(jsonObj(doc, "components"), "securitySchemes")["basicAuth"]; !reflect.DeepEqual(openAPIDeref(t, doc, s)["scheme"], "basic") {
		t.Errorf("components.securitySchemes.basicAuth = %v, want HTTP basic", s)
	}
	if sec, _ := doc["security"].([]any); len(sec) != 1 || !reflect.DeepEqual(sec[0], map[string]any{"basicAuth": []any{}}) {
		t.Errorf("security = %v, want basicAuth for every operation that does not say otherwise", doc["security"])
	}

	// The routes served, and whether they need credentials.
	s := &Server{}
	public := map[string]bool{}
	for _, r := range append(s.routeTable(), s.extraRoutes()...) {
		op, err := openAPIOperation(r.pattern)
		if err != nil {
			t.Error(err)
			continue
		}
		public[op] = r.public
	}
	documented := map[string]map[string]any{}
	for path, item := range jsonObj(doc, "paths") {
		for _, m := range openAPIMethods {
			if op := jsonObj(item, m); op != nil {
				documented[strings.ToUpper(m)+" "+path] = op
			}
		}
	}
	for _, pattern := range sortedKeys(public) {
		op, ok := documented[pattern]
		if !ok {
			t.Errorf("%s is served but not in openapi.json", pattern)
			continue
		}
		sec, set := op["security"].([]any)
		_, has401 := jsonObj(op, "responses")["401"]
		switch {
		case public[pattern] && (!set || len(sec) != 0 || has401):
			t.Errorf("%s needs no credentials: its operation wants security: [] and no 401", pattern)
		case !public[pattern] && (set && len(sec) == 0 || !has401):
			t.Errorf("%s needs credentials: its operation wants the default security and a 401", pattern)
		}
		// A browser's cross-origin request that is not GET is refused.
		if _, has403 := jsonObj(op, "responses")["403"]; !strings.HasPrefix(pattern, "GET ") && !has403 {
			t.Errorf("%s: no 403 for a cross-origin request", pattern)
		}
	}
	for _, pattern := range sortedKeys(documented) {
		if _, ok := public[pattern]; !ok {
			t.Errorf("%s is in openapi.json but not served", pattern)
		}
	}

	// Every {name} of a path is a required path parameter, and there are
	// no others; every operation answers something.
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range jsonObj(doc, "paths") {
		var want []string
		for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		sort.Strings(want)
		pathParams := func(list any) map[string]bool {
			got := map[string]bool{}
			ps, _ := list.([]any)
			for _, p := range ps {
				p := openAPIDeref(t, doc, p)
				if p["in"] == "path" {
					name, _ := p["name"].(string)
					got[name] = true
					if p["required"] != true {
						t.Errorf("%s: path parameter %s is not required", path, name)
					}
				}
			}
			return got
		}
		common := pathParams(item.(map[string]any)["parameters"])
		for _, m := range openAPIMethods {
			op := jsonObj(item, m)
			if op == nil {
				continue
			}
			got := pathParams(op["parameters"])
			for k := range common {
				got[k] = true
			}
			if names := sortedKeys(got); !slices.Equal(names, want) {
				t.Errorf("%s %s: path parameters %v, want %v", m, path, names, want)
			}
			if len(jsonObj(op, "responses")) == 0 {
				t.Errorf("%s %s: no responses", m, path)
			}
		}
	}

	// The document served is this one.
	rec := httptest.NewRecorder()
	s.openapi(rec, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
	if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != "application/json" || !bytes.Equal(rec.Body.Bytes(), openapiJSON) {
		t.Errorf("GET /api/v1/openapi.json: %d %s, %d bytes", rec.Code, ct, rec.Body.Len())
	}
}

// openAPISchemaOf maps the API's answer structs to their schemas.
var openAPISchemaOf = map[reflect.Type]string{
	reflect.TypeFor[apiError]():         "Error",
	reflect.TypeFor[statusJSON]():       "Status",
	reflect.TypeFor[totalsJSON]():       "Totals",
	reflect.TypeFor[listenerJSON]():     "Listener",
	reflect.TypeFor[handlerJSON]():      "Handler",
	reflect.TypeFor[grpcJSON]():         "GRPCChannel",
	reflect.TypeFor[wasmJSON]():         "WasmModule",
	reflect.TypeFor[callbacksJSON]():    "Callbacks",
	reflect.TypeFor[clientJSON]():       "Client",
	reflect.TypeFor[pageMeta]():         "PageMeta",
	reflect.TypeFor[subscriptionJSON](): "Subscription",
	reflect.TypeFor[traceEventJSON]():   "TraceEvent",
	reflect.TypeFor[ClusterStatus]():    "Cluster",
	reflect.TypeFor[ClusterLeaf]():      "ClusterLeaf",
	reflect.TypeFor[RegistryStatus]():   "RegistryStatus",
}

// checkSchemaOfStruct checks that schema describes the JSON encoding of rt: the
// same properties, required exactly when not omitempty, of the matching
// types.
func checkSchemaOfStruct(t *testing.T, rt reflect.Type, name string, schema map[string]any) {
	t.Helper()
	props := jsonObj(schema, "properties")
	required := map[string]bool{}
	if rs, ok := schema["required"].([]any); ok {
		for _, r := range rs {
			required[r.(string)] = true
		}
	}
	fields := map[string]bool{}
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag := f.Tag.Get("json")
		key, opts, _ := strings.Cut(tag, ",")
		if key == "-" || !f.IsExported() {
			continue
		}
		if key == "" {
			key = f.Name
		}
		fields[key] = true
		p, ok := props[key].(map[string]any)
		if !ok {
			t.Errorf("%s: %s.%s is answered as %q, which the schema lacks", name, rt.Name(), f.Name, key)
			continue
		}
		omitempty := strings.Contains(opts, "omitempty")
		if required[key] == omitempty {
			t.Errorf("%s.%s: required is %v, want %v (the field is omitempty: %v)", name, key, required[key], !omitempty, omitempty)
		}
		ft := f.Type
		nullable := false
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
			nullable = !omitempty && ft.Kind() != reflect.Struct
		}
		if got, _ := p["nullable"].(bool); got != nullable {
			t.Errorf("%s.%s: nullable is %v, want %v", name, key, got, nullable)
		}
		var want map[string]any
		switch ft.Kind() {
		case reflect.String:
			want = map[string]any{"type": "string"}
		case reflect.Bool:
			want = map[string]any{"type": "boolean"}
		case reflect.Int64, reflect.Uint64:
			want = map[string]any{"type": "integer", "format": "int64"}
		case reflect.Int, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
			want = map[string]any{"type": "integer", "format": nil}
		case reflect.Float64:
			want = map[string]any{"type": "number"}
		case reflect.Slice:
			want = map[string]any{"type": "array"}
		case reflect.Map:
			want = map[string]any{"type": "object"}
		case reflect.Struct:
			want = map[string]any{"$ref": "#/components/schemas/" + openAPISchemaOf[ft]}
		default:
			t.Errorf("%s.%s: no rule for Go type %s", name, key, ft)
		}
		for k, v := range want {
			if !reflect.DeepEqual(p[k], v) {
				t.Errorf("%s.%s: %s is %v, want %v (Go type %s)", name, key, k, p[k], v, f.Type)
			}
		}
	}
	for key := range props {
		if !fields[key] {
			t.Errorf("%s: property %q is not a field of %s", name, key, rt.Name())
		}
	}
}

// jsonStrings returns a JSON array of strings as a sorted slice.
func jsonStrings(v any) []string {
	var out []string
	a, _ := v.([]any)
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// sortedCopy returns s sorted, leaving s as it is.
func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// sourceErrorCodes returns the error codes the package's source writes: the
// string literals passed to writeError and uiError, and apiError{Code: ...}.
func sourceErrorCodes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		lit := func(e ast.Expr) {
			if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				s, _ := strconv.Unquote(bl.Value)
				set[s] = true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "writeError" || id.Name == "uiError") && len(n.Args) == 4 {
					lit(n.Args[2])
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "apiError" {
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok && fmt.Sprint(kv.Key) == "Code" {
							lit(kv.Value)
						}
					}
				}
			}
			return true
		})
	}
	return sortedKeys(set)
}

// openAPIParams returns an operation's parameters by name.
func openAPIParams(t *testing.T, doc map[string]any, path, method string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	ps, _ := jsonObj(jsonObj(doc, "paths")[path], method)["parameters"].([]any)
	for _, p := range ps {
		p := openAPIDeref(t, doc, p)
		out[p["name"].(string)] = p
	}
	return out
}

func TestOpenAPIDescribesAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := jsonObj(jsonObj(doc, "components"), "schemas")
	schema := func(t *testing.T, name string) map[string]any {
		t.Helper()
		s := jsonObj(schemas, name)
		if s == nil {
			t.Fatalf("no schema %s", name)
		}
		return s
	}

	t.Run("structs", func(t *testing.T) {
		for rt, name := range openAPISchemaOf {
			checkSchemaOfStruct(t, rt, name, schema(t, name))
		}
	})

	t.Run("enums", func(t *testing.T) {
		prop := func(s, p string) map[string]any { return jsonObj(jsonObj(schema(t, s), "properties"), p) }
		refused := prop("Listener", "refused")
		if got, want := sortedKeys(jsonObj(refused, "properties")), sortedCopy(gateway.Causes()); !slices.Equal(got, want) {
			t.Errorf("Listener.refused: %v, want the causes %v", got, want)
		}
		if got, want := jsonStrings(refused["required"]), sortedCopy(gateway.Causes()); !slices.Equal(got, want) {
			t.Errorf("Listener.refused.required: %v, want %v (every cause is answered)", got, want)
		}
		if got, want := sortedKeys(jsonObj(prop("Listener", "closed"), "properties")), sortedCopy(gateway.CloseClasses[:]); !slices.Equal(got, want) {
			t.Errorf("Listener.closed: %v, want the close classes %v", got, want)
		}
		wasmFaults := jsonObj(prop("WasmModule", "faults_by_kind"), "properties")
		if got, want := sortedKeys(wasmFaults), sortedCopy(wasmhost.FaultKinds[:]); !slices.Equal(got, want) {
			t.Errorf("WasmModule.faults_by_kind: %v, want the fault kinds %v", got, want)
		}
		var kinds []string
		for k := gateway.TraceKind(0); k.String() != "unknown"; k++ {
			kinds = append(kinds, k.String())
		}
		if got := jsonStrings(prop("TraceEvent", "kind")["enum"]); !slices.Equal(got, sortedCopy(kinds)) {
			t.Errorf("TraceEvent.kind: %v, want %v", got, kinds)
		}
		var codes []string
		for _, c := range gateway.Codes() {
			codes = append(codes, c.String())
		}
		if got := jsonStrings(prop("TraceEvent", "code")["enum"]); !slices.Equal(got, sortedCopy(codes)) {
			t.Errorf("TraceEvent.code: %v, want %v", got, codes)
		}
		desc, _ := prop("TraceEvent", "name")["description"].(string)
		for _, n := range append(gateway.Callbacks[:], gateway.CallNames[:]...) {
			if !strings.Contains(desc, n) {
				t.Errorf("TraceEvent.name does not name %s", n)
			}
		}
		states := sortedCopy([]string{gateway.StateConnecting, gateway.StateConnected, gateway.StateDisconnected})
		if got := jsonStrings(prop("Client", "conn_state")["enum"]); !slices.Equal(got, states) {
			t.Errorf("Client.conn_state: %v, want %v", got, states)
		}
		var backends []string
		for _, h := range []Handler{{GRPC: &fakeChannel{}}, {Wasm: stubWasm{}}, {Wasm: stubWasm{}, GRPC: &fakeChannel{}}} {
			backends = append(backends, h.Backend())
		}
		for _, s := range []string{"Handler", "Client"} {
			if got := jsonStrings(prop(s, "backend")["enum"]); !slices.Equal(got, sortedCopy(backends)) {
				t.Errorf("%s.backend: %v, want %v", s, got, backends)
			}
		}
		if got, want := jsonStrings(prop("Error", "code")["enum"]), sourceErrorCodes(t); !slices.Equal(got, want) {
			t.Errorf("Error.code: %v, want the codes the source writes %v", got, want)
		}
	})

	t.Run("parameters", func(t *testing.T) {
		ps := openAPIParams(t, doc, "/api/v1/clients", "get")
		if got := sortedKeys(ps); !slices.Equal(got, sortedCopy(queryParams)) {
			t.Errorf("GET /api/v1/clients parameters: %v, want %v", got, sortedCopy(queryParams))
		}
		bounds := func(p map[string]any, min, max, def any) {
			t.Helper()
			s := jsonObj(p, "schema")
			if s["minimum"] != min || s["maximum"] != max || s["default"] != def {
				t.Errorf("%s: minimum %v maximum %v default %v, want %v %v %v", p["name"], s["minimum"], s["maximum"], s["default"], min, max, def)
			}
		}
		bounds(ps["limit"], 1.0, float64(maxLimit), float64(defaultLimit))
		bounds(ps["page"], 1.0, nil, 1.0)
		if got := jsonStrings(jsonObj(ps["conn_state"], "schema")["enum"]); !slices.Equal(got, jsonStrings(jsonObj(jsonObj(schema(t, "Client"), "properties"), "conn_state")["enum"])) {
			t.Errorf("conn_state parameter: %v", got)
		}

		tp := openAPIParams(t, doc, "/api/v1/trace", "get")
		for _, name := range []string{"clientid", "conn", "payload", "duration", "format"} {
			if tp[name] == nil {
				t.Errorf("GET /api/v1/trace: no parameter %s", name)
			}
		}
		bounds(tp["payload"], 0.0, float64(maxTracePayload), 0.0)
		if d, err := time.ParseDuration(fmt.Sprint(jsonObj(tp["duration"], "schema")["default"])); err != nil || d != defaultTraceDuration {
			t.Errorf("trace duration default: %v %v, want %v", d, err, defaultTraceDuration)
		}
		if got := jsonStrings(jsonObj(tp["format"], "schema")["enum"]); !slices.Equal(got, []string{"jsonl", "sse"}) {
			t.Errorf("trace format: %v", got)
		}
	})

	t.Run("live", func(t *testing.T) {
		checkLiveAnswers(t, doc)
	})
}

// stubWasm is a WasmModule, for Handler.Backend.
type stubWasm struct{}

func (stubWasm) WasmStatus() WasmStatus { return WasmStatus{} }
func (stubWasm) Reload() error          { return nil }

// checkAgainstSchema checks v, decoded with json.Number, against an OpenAPI
// schema: types, nullable, required and known properties, enums, bounds.
// It is the part of JSON Schema the document uses.
func checkAgainstSchema(t *testing.T, doc map[string]any, where string, schema map[string]any, v any) {
	t.Helper()
	schema = openAPIDeref(t, doc, schema)
	if v == nil {
		if schema["nullable"] != true {
			t.Errorf("%s: null, which the schema does not allow", where)
		}
		return
	}
	same := func(e any) bool {
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			return err == nil && e == f
		}
		return e == v
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, same) {
		t.Errorf("%s: %v is not one of %v", where, v, enum)
	}
	switch typ := schema["type"]; typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, want an object", where, v)
			return
		}
		props := jsonObj(schema, "properties")
		for _, r := range jsonStrings(schema["required"]) {
			if _, ok := m[r]; !ok {
				t.Errorf("%s: required %s is missing", where, r)
			}
		}
		for k, x := range m {
			if p, ok := props[k].(map[string]any); ok {
				checkAgainstSchema(t, doc, where+"."+k, p, x)
			} else if ap, ok := schema["additionalProperties"].(map[string]any); ok {
				checkAgainstSchema(t, doc, where+"."+k, ap, x)
			} else {
				t.Errorf("%s: %s is answered but not documented", where, k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			t.Errorf("%s: %T, want an array", where, v)
			return
		}
		for i, x := range a {
			checkAgainstSchema(t, doc, where+"["+strconv.Itoa(i)+"]", jsonObj(schema, "items"), x)
		}
	case "string":
		if _, ok := v.(string); !ok {
			t.Errorf("%s: %T, want a string", where, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: %T, want a boolean", where, v)
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			t.Errorf("%s: %T, want a number", where, v)
			return
		}
		if _, err := n.Int64(); typ == "integer" && err != nil {
			if _, err := strconv.ParseUint(n.String(), 10, 64); err != nil {
				t.Errorf("%s: %s, want an integer", where, n)
			}
		}
		f, _ := n.Float64()
		if lo, ok := schema["minimum"].(float64); ok && f < lo {
			t.Errorf("%s: %s < minimum %v", where, n, lo)
		}
		if hi, ok := schema["maximum"].(float64); ok && f > hi {
			t.Errorf("%s: %s > maximum %v", where, n, hi)
		}
	default:
		t.Errorf("%s: schema without a type: %v", where, schema)
	}
}

// openAPIAnswer returns the schema of an operation's answer with status.
func openAPIAnswer(t *testing.T, doc map[string]any, method, path, status, contentType string) map[string]any {
	t.Helper()
	r := openAPIDeref(t, doc, jsonObj(jsonObj(jsonObj(doc, "paths")[path], method), "responses")[status])
	if r == nil {
		t.Fatalf("%s %s documents no %s answer", method, path, status)
	}
	s := jsonObj(jsonObj(jsonObj(r, "content"), contentType), "schema")
	if s == nil {
		t.Fatalf("%s %s %s: no %s schema", method, path, status, contentType)
	}
	return s
}

// decodeJSON decodes b, keeping numbers as json.Number.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// checkLiveAnswers checks real answers of a gateway with a connected device
// against the document: what the struct check cannot see (answers built
// as maps, nesting, error bodies, the trace stream).
func checkLiveAnswers(t *testing.T, doc map[string]any) {
	f := newFixture(t, nil)
	dev, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	anon, err := net.Dial("tcp", f.addr) // stays unauthenticated
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := dev.Write([]byte("dev-1\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.gw.ClientConn("dev-1") == nil || f.gw.NumConns() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("devices not connected")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	handle := f.gw.ClientConn("dev-1").Handle()

	for _, tc := range []struct {
		method, path, docPath, status, body string
	}{
		{"GET", "/healthz", "/healthz", "200", ""},
		{"GET", "/readyz", "/readyz", "200", ""},
		{"GET", "/api/v1/status", "/api/v1/status", "200", ""},
		{"GET", "/api/v1/overview", "/api/v1/overview", "200", ""},
		{"GET", "/api/v1/cluster", "/api/v1/cluster", "404", ""},
		{"GET", "/api/v1/listeners", "/api/v1/listeners", "200", ""},
		{"GET", "/api/v1/listeners/tcp", "/api/v1/listeners/{name}", "200", ""},
		{"GET", "/api/v1/listeners/nope", "/api/v1/listeners/{name}", "404", ""},
		{"GET", "/api/v1/clients", "/api/v1/clients", "200", ""},
		{"GET", "/api/v1/clients?like_clientid=dev&limit=1", "/api/v1/clients", "200", ""},
		{"GET", "/api/v1/clients?limit=10001", "/api/v1/clients", "400", ""},
		{"GET", "/api/v1/clients/dev-1", "/api/v1/clients/{id}", "200", ""},
		{"GET", "/api/v1/clients/nobody", "/api/v1/clients/{id}", "404", ""},
		{"GET", "/api/v1/clients/" + handle + "/subscriptions", "/api/v1/clients/{id}/subscriptions", "200", ""},
		{"POST", "/api/v1/clients/dev-1/subscriptions", "/api/v1/clients/{id}/subscriptions", "400", `{"qos":1}`},
		{"POST", "/api/v1/clients/dev-1/subscriptions", "/api/v1/clients/{id}/subscriptions", "409", `{"topic":"a/b"}`},
		{"POST", "/api/v1/clients/dev-1/subscriptions", "/api/v1/clients/{id}/subscriptions", "413", `{"topic":"` + strings.Repeat("a", maxBody) + `"}`},
		{"DELETE", "/api/v1/clients/dev-1/subscriptions/a%2Fb", "/api/v1/clients/{id}/subscriptions/{topic}", "404", ""},
		{"GET", "/api/v1/handlers", "/api/v1/handlers", "200", ""},
		{"GET", "/api/v1/handlers/line", "/api/v1/handlers/{name}", "200", ""},
		{"POST", "/api/v1/handlers/line/reload", "/api/v1/handlers/{name}/reload", "400", ""},
		{"GET", "/api/v1/trace?clientid=nobody", "/api/v1/trace", "404", ""},
	} {
		resp, body := f.do(t, tc.method, tc.path, "", "", tc.body)
		where := tc.method + " " + tc.path
		if got := strconv.Itoa(resp.StatusCode); got != tc.status {
			t.Errorf("%s: %s %s, want %s", where, got, body, tc.status)
			continue
		}
		checkAgainstSchema(t, doc, where, openAPIAnswer(t, doc, strings.ToLower(tc.method), tc.docPath, tc.status, "application/json"), decodeJSON(t, body))
	}

	// A cross-origin mutation from a browser.
	req, _ := http.NewRequest("DELETE", f.url+"/api/v1/clients/nobody", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("cross-origin DELETE: %d %s, want 403", resp.StatusCode, body)
		} else {
			checkAgainstSchema(t, doc, "cross-origin DELETE", openAPIAnswer(t, doc, "delete", "/api/v1/clients/{id}", "403", "application/json"), decodeJSON(t, body))
		}
	}

	// The trace stream: every event is a TraceEvent, the second trace of
	// the connection is a conflict.
	resp, err := http.Get(f.url + "/api/v1/trace?format=jsonl&payload=4&conn=" + handle)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("trace: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, body := f.get(t, "/api/v1/trace?clientid=dev-1", "", ""); resp.StatusCode != 409 {
		t.Errorf("second trace: %d %s, want 409", resp.StatusCode, body)
	} else {
		checkAgainstSchema(t, doc, "second trace", openAPIAnswer(t, doc, "get", "/api/v1/trace", "409", "application/json"), decodeJSON(t, body))
	}
	if _, err := dev.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Close the device once its echo is back: the trace ends.
		buf := make([]byte, 5)
		io.ReadFull(dev, buf)
		dev.Close()
	}()
	evSchema := openAPIAnswer(t, doc, "get", "/api/v1/trace", "200", "application/x-ndjson")
	sc := bufio.NewScanner(resp.Body)
	var kinds []string
	timer := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer timer.Stop()
	for sc.Scan() {
		ev := decodeJSON(t, sc.Bytes())
		checkAgainstSchema(t, doc, "trace event", evSchema, ev)
		kinds = append(kinds, fmt.Sprint(ev.(map[string]any)["kind"]))
	}
	for _, k := range []string{"callback", "call", "return", "end"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("trace kinds %v: no %s", kinds, k)
		}
	}
}
