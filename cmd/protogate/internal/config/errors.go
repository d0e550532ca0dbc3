package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Errors is the error returned by [Parse], [Load], [Check] and
// [Config.Validate]: every problem found, in the order of their lines in
// the file (problems without a line, such as those of a Config built in Go,
// last). Its message is the message of each, one per line. errors.As finds
// the first [*Error] in it.
type Errors []*Error

// Error implements the error interface.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders es by line, lines unknown (0) last, keeping the order
// in which they were found otherwise.
func sortErrors(es []*Error) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Line, es[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// Error is one problem of a configuration. [Parse], [Load], [Check] and
// [Config.Validate] return them in an [Errors]. Its message has the form
//
//	config: [FILE: ][line N: ][PATH: ]MSG
//
// for example
//
//	config: gw.yaml: line 12: listeners[0].type: unknown listener type "tpc" (want tcp, ssl, udp or dtls)
type Error struct {
	// File is the path of the configuration file, set by Load. Empty for Parse
	// and Validate.
	File string
	// Line is the 1-based line of the offending key or value in the YAML
	// document, or 0 when unknown (e.g. a Config built in Go).
	Line int
	// Path is the key path of the offending value, such as
	// "listeners[0].tls.cert_file" or `handlers["my.handler"].grpc`. It is
	// empty for problems with the document as a whole.
	Path string
	// Msg describes the problem, lowercase and without the prefixes above.
	Msg string
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// errorf builds an *Error without file information.
func errorf(line int, path, format string, args ...any) *Error {
	return &Error{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// simpleKey matches map keys that can be appended to a path as ".key".
// Anything else (dots, spaces, brackets, ...) is written as ["key"] so that
// paths stay unambiguous.
var simpleKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends a mapping key to a key path.
func joinKey(parent, key string) string {
	if !simpleKey.MatchString(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// joinIndex appends a sequence index to a key path.
func joinIndex(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// parentPath strips the last segment of a key path built by joinKey and
// joinIndex: "a.b[2]" -> "a.b" -> "a" -> "".
func parentPath(p string) string {
	last := 0
	inQuote := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if inQuote {
			switch c {
			case '\\':
				i++
			case '"':
				inQuote = false
			}
			continue
		}
		switch c {
		case '"':
			inQuote = true
		case '.', '[':
			last = i
		}
	}
	return p[:last]
}
