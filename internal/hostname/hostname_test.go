package hostname_test

import (
	"strings"
	"testing"

	"github.com/protogate/protogate/internal/hostname"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		h    string
		want bool
	}{
		{"localhost", true},
		{"handlers.example.com", true},
		{"handlers.example.com.", true},
		{"my_host-1", true},
		{"", false},
		{"-a.example", false},
		{"a-.example", false},
		{"a..b", false},
		{"a b", false},
		{"a:b", false},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 126) + "a", true},
		{strings.Repeat("a.", 127), false},
	} {
		if got := hostname.Valid(tc.h); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}
