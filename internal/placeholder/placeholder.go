// Package placeholder parses and renders EMQX's request templates: text
// with ${name} placeholders, such as "/auth?c=${clientid}" or
// "${client_attrs.group}". The HTTP authenticator, the HTTP authorization
// source and the JWT authenticator's verify_claims share it.
package placeholder

import (
	"fmt"
	"strings"
)

// Template is a parsed template: literal text between placeholders. The
// zero Template renders as the empty string. A Template is immutable and
// safe for concurrent use.
type Template struct {
	lits []string // len(lits) == len(vars)+1
	vars []string
}

// Parse parses s. Each ${name} must be closed and allowed reports whether
// name (spaces around it trimmed) is a placeholder the caller can fill;
// the error of an unknown one quotes it. A "$" not followed by "{" is
// literal text. Parse is a pure function, safe for concurrent use.
func Parse(s string, allowed func(name string) error) (Template, error) {
	var t Template
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			t.lits = append(t.lits, rest)
			return t, nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("%q: unclosed placeholder", s)
		}
		name := strings.TrimSpace(rest[i+2 : i+j])
		if name == "" {
			return Template{}, fmt.Errorf("%q: empty placeholder ${}", s)
		}
		if err := allowed(name); err != nil {
			return Template{}, fmt.Errorf("%q: ${%s}: %w", s, name, err)
		}
		t.lits = append(t.lits, rest[:i])
		t.vars = append(t.vars, name)
		rest = rest[i+j+1:]
	}
}

// MustParse is Parse for templates known to be good; it panics on error.
func MustParse(s string, allowed func(string) error) Template {
	t, err := Parse(s, allowed)
	if err != nil {
		panic(err)
	}
	return t
}

// Literal reports whether t holds no placeholder.
func (t Template) Literal() bool { return len(t.vars) == 0 }

// Vars returns the names of t's placeholders, in order.
func (t Template) Vars() []string { return append([]string(nil), t.vars...) }

// Render returns t with each placeholder replaced by escape(value(name)).
// A nil escape inserts values as they are. A value the caller does not
// know should be returned as "" (EMQX renders an undefined variable of a
// request as the empty string). Render is safe for concurrent use if
// value and escape are.
func (t Template) Render(value func(name string) string, escape func(string) string) string {
	if len(t.lits) == 0 {
		return ""
	}
	if len(t.vars) == 0 {
		return t.lits[0]
	}
	var b strings.Builder
	for i, v := range t.vars {
		b.WriteString(t.lits[i])
		s := value(v)
		if escape != nil {
			s = escape(s)
		}
		b.WriteString(s)
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String()
}

// Names returns an allowed func for Parse that accepts the given names
// and, if attrs is true, client_attrs.NAME for any non-empty NAME. The
// error of another name lists the accepted ones. The func is safe for
// concurrent use.
func Names(attrs bool, names ...string) func(string) error {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	list := strings.Join(names, ", ")
	if attrs {
		list += ", client_attrs.NAME"
	}
	return func(name string) error {
		if set[name] {
			return nil
		}
		if a, ok := strings.CutPrefix(name, "client_attrs."); ok && attrs && a != "" {
			return nil
		}
		return fmt.Errorf("unknown placeholder (want one of %s)", list)
	}
}
