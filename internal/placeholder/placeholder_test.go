package placeholder

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseRender(t *testing.T) {
	vals := map[string]string{"clientid": "c/1", "username": "u 1", "client_attrs.g": "G"}
	value := func(n string) string { return vals[n] }
	allowed := Names(true, "clientid", "username")
	for _, tc := range []struct {
		in, want, wantEsc string
		literal           bool
	}{
		{"", "", "", true},
		{"plain $ text {}", "plain $ text {}", "plain $ text {}", true},
		{"${clientid}", "c/1", "c%2F1", false},
		{"a/${clientid}/${username}/b", "a/c/1/u 1/b", "a/c%2F1/u+1/b", false},
		{"${ username }", "u 1", "u+1", false},
		{"${client_attrs.g}-${client_attrs.other}", "G-", "G-", false},
		{"$${clientid}", "$c/1", "$c%2F1", false},
	} {
		tp, err := Parse(tc.in, allowed)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := tp.Render(value, nil); got != tc.want {
			t.Errorf("Render(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := tp.Render(value, url.QueryEscape); got != tc.wantEsc {
			t.Errorf("Render(%q, QueryEscape) = %q, want %q", tc.in, got, tc.wantEsc)
		}
		if tp.Literal() != tc.literal {
			t.Errorf("Literal(%q) = %v", tc.in, tp.Literal())
		}
	}
	if (Template{}).Render(value, nil) != "" {
		t.Error("the zero Template renders something")
	}
	if got := MustParse("${clientid}${username}", allowed).Vars(); strings.Join(got, ",") != "clientid,username" {
		t.Errorf("Vars = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"${clientid":        "unclosed",
		"a${}":              "empty placeholder",
		"${password}":       "unknown placeholder (want one of clientid, username)",
		"${client_attrs.}":  "unknown placeholder",
		"${client_attrs.x}": "unknown placeholder",
	} {
		_, err := Parse(in, Names(false, "clientid", "username"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %v; want %q", in, err, want)
		}
	}
}
