package authhttp

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		ctype, body string
		want        string // fmt of the map, or the error substring after "!"
	}{
		{"application/json", `{"result":"allow","n":12345678901234567890}`, `map[n:12345678901234567890 result:allow]`},
		{"application/json; charset=utf-8", `{"a":1}`, `map[a:1]`},
		{"APPLICATION/JSON", `{"a":1}`, `map[a:1]`},
		{"application/x-www-form-urlencoded", `a=1&a=2&b=x+y`, `map[a:2 b:x y]`},
		{"application/json", `[1]`, `!invalid JSON`},
		{"application/json", `null`, `!want a JSON object`},
		{"application/json", `{} x`, `!data after`},
		{"application/json", `{"a":`, `!invalid JSON`},
		{"application/x-www-form-urlencoded", `a=%`, `!invalid form`},
		{"text/plain", `a`, `!content type "text/plain"`},
		{"", `{}`, `!no content type`},
		{";;", `{}`, `!content type`},
	} {
		m, err := ParseBody(tc.ctype, []byte(tc.body))
		if e, ok := strings.CutPrefix(tc.want, "!"); ok {
			if err == nil || !strings.Contains(err.Error(), e) {
				t.Errorf("ParseBody(%q, %q) = %v, %v; want an error with %q", tc.ctype, tc.body, m, err, e)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBody(%q, %q): %v", tc.ctype, tc.body, err)
			continue
		}
		if got := fmtMap(m); got != tc.want {
			t.Errorf("ParseBody(%q, %q) = %s, want %s", tc.ctype, tc.body, got, tc.want)
		}
	}
}

func fmtMap(m map[string]any) string {
	for k, v := range m {
		if n, ok := v.(json.Number); ok {
			m[k] = n.String()
		}
	}
	b := new(strings.Builder)
	b.WriteString("map[")
	first := true
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !first {
			b.WriteString(" ")
		}
		first = false
		b.WriteString(k + ":" + m[k].(string))
	}
	b.WriteString("]")
	return b.String()
}

// FuzzParseBody checks that no body panics the parser.
func FuzzParseBody(f *testing.F) {
	f.Add("application/json", []byte(`{"result":"allow"}`))
	f.Add("application/x-www-form-urlencoded", []byte(`result=allow`))
	f.Add("application/json; charset=\"", []byte(`{`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		m, err := ParseBody(ctype, body)
		if err == nil && m == nil {
			t.Fatal("no error and no map")
		}
	})
}
