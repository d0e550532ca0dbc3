package config

import (
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxDecodeWork bounds the nodes and keys a decoder visits, so that
// documents that expand aliases excessively fail fast. A variable for tests.
var maxDecodeWork = 1_000_000

// maxAliasChain bounds alias-to-alias and nested merge key chains.
const maxAliasChain = 32

// decoder walks a yaml.Node tree into Go values strictly. Struct fields are
// matched by their yaml tags; unknown and duplicate keys are errors.
//
// A problem with one value is recorded in errs and decoding goes on with
// the rest of the document, so that every problem is reported at once; the
// value keeps its default. Only running out of budget stops decoding: the
// decode methods return an error for that alone.
type decoder struct {
	pos    map[string]int  // key path -> line of the key (or list item)
	set    map[string]bool // key paths present with a non-null value
	budget int             // remaining work, see maxDecodeWork
	// merged memoizes pairs() of mappings, so that a mapping merged
	// ("<<: *x") many times is flattened once; nil marks one in progress.
	merged map[*yaml.Node][]pair

	errs []*Error
	// hidden lists the key paths whose value could not be decoded: the
	// validator's complaints about them (which see only the default) would
	// repeat the decoding error, so Parse drops them. A path ending in "."
	// hides the whole subtree.
	hidden map[string]bool
}

// fail records a problem with the value at path; the validator's errors
// about path itself are dropped.
func (d *decoder) fail(e *Error, path string) {
	d.errs = append(d.errs, e)
	d.hide(path, false)
}

// failTree records a problem with the value at path that left it and
// everything below it undecoded. The validator's errors about the
// enclosing mapping or list ("psk needs identities_file or identities")
// are dropped too: they would blame the value's absence.
func (d *decoder) failTree(e *Error, path string) {
	d.errs = append(d.errs, e)
	d.hide(path, true)
	if path != "" {
		d.hide(parentPath(path), false)
	}
}

func (d *decoder) hide(path string, subtree bool) {
	if d.hidden == nil {
		d.hidden = map[string]bool{}
	}
	d.hidden[path] = true
	if subtree {
		d.hidden[path+"."] = true
	}
}

// hides reports whether a validator error at path repeats a decoding error.
func (d *decoder) hides(path string) bool {
	if d.hidden[path] {
		return true
	}
	for p := path; p != ""; {
		p = parentPath(p)
		if d.hidden[p+"."] {
			return true
		}
	}
	return false
}

// defaulter is implemented by structs that have non-zero defaults; it is
// called on every freshly allocated value before decoding into it.
type defaulter interface{ setDefaults() }

type pair struct{ key, value *yaml.Node }

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) spend(n *yaml.Node, path string) error {
	d.budget--
	if d.budget < 0 {
		return errorf(n.Line, path, "document too complex (excessive aliasing?)")
	}
	return nil
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node, path string) (*yaml.Node, *Error) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliasChain || n.Alias == nil {
			return nil, errorf(n.Line, path, "cannot resolve alias *%s", n.Value)
		}
		n = n.Alias
	}
	if n == nil {
		return nil, errorf(0, path, "missing value")
	}
	return n, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}

// decode stores n into v (addressable). A null n leaves v untouched so that
// defaults survive. Problems are recorded in d.errs; the returned error is
// fatal (the work budget ran out).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	n, err := resolve(n, path)
	if err != nil {
		d.failTree(err, path)
		return nil
	}
	if err := d.spend(n, path); err != nil {
		return err
	}
	if isNull(n) {
		return nil
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(withPath(err, n, path), path)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.decodeStruct(n, v, path)
	case reflect.Pointer:
		nv := newValue(v.Type().Elem())
		if err := d.decode(n, nv.Elem(), path); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	case reflect.Map:
		return d.decodeMap(n, v, path)
	case reflect.Slice:
		return d.decodeSlice(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(errorf(n.Line, path, "want a string, got %s", describe(n)), path)
			return nil
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
			switch strings.ToLower(n.Value) {
			case "true":
				v.SetBool(true)
				return nil
			case "false":
				v.SetBool(false)
				return nil
			}
		}
		d.fail(errorf(n.Line, path, "want true or false, got %s", describe(n)), path)
		return nil
	case reflect.Int:
		if !setInt(n, v) {
			d.fail(errorf(n.Line, path, "want an integer, got %s", describe(n)), path)
		}
		return nil
	}
	d.fail(errorf(n.Line, path, "internal error: cannot decode into %s", v.Type()), path)
	return nil
}

// setInt stores n into the int v if n is a decimal integer scalar.
func setInt(n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return false
	}
	i, err := strconv.ParseInt(n.Value, 10, strconv.IntSize)
	if err != nil {
		return false
	}
	v.SetInt(i)
	return true
}

// Values of the `config:"..."` struct tag, for int fields that accept more
// than an integer.
const (
	// optInfinity accepts the word "infinity", stored as 0 (no limit).
	optInfinity = "infinity"
	// optPerSecond accepts a count rate such as "1000/s" or "6000/m",
	// stored as the whole number of events per second it comes to.
	optPerSecond = "per_second"
)

// decodeOpt decodes n into the int field v whose config tag is opt.
func (d *decoder) decodeOpt(n *yaml.Node, v reflect.Value, path, opt string) error {
	n, err := resolve(n, path)
	if err != nil {
		d.failTree(err, path)
		return nil
	}
	if err := d.spend(n, path); err != nil {
		return err
	}
	if isNull(n) {
		return nil
	}
	if e := decodeOptValue(n, v, path, opt); e != nil {
		d.fail(e, path)
	}
	return nil
}

func decodeOptValue(n *yaml.Node, v reflect.Value, path, opt string) *Error {
	if v.Kind() != reflect.Int {
		return errorf(n.Line, path, "internal error: config tag %q on %s", opt, v.Type())
	}
	if setInt(n, v) {
		return nil
	}
	switch opt {
	case optInfinity:
		if n.Kind == yaml.ScalarNode && n.Value == "infinity" {
			v.SetInt(0)
			return nil
		}
		return errorf(n.Line, path, "want an integer or infinity, got %s", describe(n))
	case optPerSecond:
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "/") {
			r, err := ParseRate(n.Value)
			if err != nil {
				return errorf(n.Line, path, "%s", err)
			}
			if r.Bytes {
				return errorf(n.Line, path, "rate %q counts bytes; want a number per second such as 1000 or 1000/s", n.Value)
			}
			perSec, ok := wholePerSecond(r)
			if !ok {
				return errorf(n.Line, path, "rate %q is not a whole number per second (want e.g. 1000/s or 6000/m)", n.Value)
			}
			v.SetInt(perSec)
			return nil
		}
		return errorf(n.Line, path, "want an integer or a rate such as 1000/s, got %s", describe(n))
	}
	return errorf(n.Line, path, "internal error: unknown config tag %q", opt)
}

// wholePerSecond returns r.Amount per second if that is a whole number
// that fits in an int.
func wholePerSecond(r Rate) (int64, bool) {
	if r.Amount <= 0 || r.Period <= 0 {
		return 0, false
	}
	num := new(big.Int).Mul(big.NewInt(r.Amount), big.NewInt(int64(time.Second)))
	q := new(big.Rat).SetFrac(num, big.NewInt(int64(r.Period)))
	if !q.IsInt() || !q.Num().IsInt64() || q.Num().Int64() > math.MaxInt {
		return 0, false
	}
	return q.Num().Int64(), true
}

// withPath fills in the path (and line) of an error from UnmarshalYAML.
func withPath(err error, n *yaml.Node, path string) *Error {
	e, ok := err.(*Error)
	if !ok {
		return &Error{Line: n.Line, Path: path, Msg: err.Error(), Err: err}
	}
	c := *e
	if c.Path == "" {
		c.Path = path
	}
	if c.Line == 0 {
		c.Line = n.Line
	}
	return &c
}

// newValue allocates a *T with its defaults applied.
func newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if df, ok := p.Interface().(defaulter); ok {
		df.setDefaults()
	}
	return p
}

// listForm is implemented by config structs that may also be written as
// a list: the list is decoded into the field whose yaml key listField
// names, at the struct's own path (so "authentication: [...]" reads as
// "authentication: {chain: [...]}" with errors at authentication[i]).
type listForm interface{ listField() string }

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if lf, ok := v.Addr().Interface().(listForm); ok && n.Kind == yaml.SequenceNode {
		idx := fieldsOf(v.Type()).index[lf.listField()]
		d.set[joinKey(path, lf.listField())] = true
		return d.decode(n, v.FieldByIndex(idx), path)
	}
	if n.Kind != yaml.MappingNode {
		d.failTree(errorf(n.Line, path, "want a mapping, got %s", describe(n)), path)
		return nil
	}
	pairs, err := d.pairs(n, path, 0)
	if err != nil {
		return err
	}
	fields := fieldsOf(v.Type())
	for _, p := range pairs {
		idx, ok := fields.index[p.key.Value]
		if !ok {
			msg, hint := unknownKey(p.key.Value, fields.names)
			d.errs = append(d.errs, errorf(p.key.Line, path, "%s", msg))
			if hint != "" {
				// The key was probably meant to be hint: complaints that
				// hint is missing would only repeat this error.
				d.hide(path, false)
				d.hide(joinKey(path, hint), true)
			}
			continue
		}
		child := joinKey(path, p.key.Value)
		if !d.record(p, child) {
			continue
		}
		if opt := fields.opts[p.key.Value]; opt != "" {
			err = d.decodeOpt(p.value, v.FieldByIndex(idx), child, opt)
		} else {
			err = d.decode(p.value, v.FieldByIndex(idx), child)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// record notes the line of a key and whether its value is non-null. It
// reports false (having recorded the error) when the value is an alias that
// cannot be resolved.
func (d *decoder) record(p pair, path string) bool {
	d.pos[path] = p.key.Line
	val, err := resolve(p.value, path)
	if err != nil {
		d.failTree(err, path)
		return false
	}
	if !isNull(val) {
		d.set[path] = true
	}
	return true
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		d.failTree(errorf(n.Line, path, "want a mapping, got %s", describe(n)), path)
		return nil
	}
	if v.Type().Key().Kind() != reflect.String {
		d.failTree(errorf(n.Line, path, "internal error: map key type %s", v.Type().Key()), path)
		return nil
	}
	pairs, err := d.pairs(n, path, 0)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		// An empty mapping is the same as an absent one: a nil map.
		return nil
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(pairs)))
	}
	for _, p := range pairs {
		child := joinKey(path, p.key.Value)
		if !d.record(p, child) {
			continue
		}
		ev := newValue(v.Type().Elem())
		if err := d.decode(p.value, ev.Elem(), child); err != nil {
			return err
		}
		v.SetMapIndex(reflect.ValueOf(p.key.Value).Convert(v.Type().Key()), ev.Elem())
	}
	return nil
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.SequenceNode {
		d.failTree(errorf(n.Line, path, "want a list, got %s", describe(n)), path)
		return nil
	}
	if len(n.Content) == 0 {
		// An empty list is the same as an absent one: a nil slice.
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		child := joinIndex(path, i)
		d.pos[child] = item.Line
		ev := newValue(v.Type().Elem())
		if err := d.decode(item, ev.Elem(), child); err != nil {
			return err
		}
		s = reflect.Append(s, ev.Elem())
	}
	v.Set(s)
	return nil
}

// pairs returns the key/value pairs of mapping n in document order, with
// merge keys ("<<: *anchor" or "<<: [*a, *b]") expanded: explicit keys win
// over merged ones, earlier merge sources over later ones. Keys must be
// non-null scalars and must not repeat: a bad key is recorded as an error
// and left out. The returned error is fatal (the work budget ran out).
func (d *decoder) pairs(n *yaml.Node, path string, depth int) ([]pair, error) {
	if depth > maxAliasChain {
		d.failTree(errorf(n.Line, path, "merge keys nested too deeply"), path)
		return nil, nil
	}
	if ps, ok := d.merged[n]; ok {
		if ps == nil {
			d.failTree(errorf(n.Line, path, "a << merge key refers to the mapping that contains it"), path)
		}
		return ps, nil
	}
	if d.merged == nil {
		d.merged = map[*yaml.Node][]pair{}
	}
	d.merged[n] = nil
	ps, err := d.flatten(n, path, depth)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		ps = []pair{}
	}
	d.merged[n] = ps
	return ps, nil
}

func (d *decoder) flatten(n *yaml.Node, path string, depth int) ([]pair, error) {
	var out []pair
	seen := map[string]int{}
	var merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := d.spend(n, path); err != nil {
			return nil, err
		}
		k, err := resolve(n.Content[i], path)
		if err != nil {
			d.failTree(err, path)
			continue
		}
		val := n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.errs = append(d.errs, errorf(k.Line, path, "keys must be strings, got %s", describe(k)))
			continue
		}
		if k.ShortTag() == "!!merge" {
			srcs := d.mergeSources(val, path)
			for _, src := range srcs {
				ps, err := d.pairs(src, path, depth+1)
				if err != nil {
					return nil, err
				}
				merged = append(merged, ps...)
			}
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errs = append(d.errs, errorf(k.Line, path, "duplicate key %q (first at line %d)", k.Value, first))
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if err := d.spend(n, path); err != nil {
			return nil, err
		}
		if _, dup := seen[p.key.Value]; dup {
			continue
		}
		seen[p.key.Value] = p.key.Line
		out = append(out, p)
	}
	return out, nil
}

// mergeSources returns the mappings named by the value of a "<<" key; a
// value that is not a mapping or a list of mappings is recorded as an error.
func (d *decoder) mergeSources(val *yaml.Node, path string) []*yaml.Node {
	val, err := resolve(val, path)
	if err != nil {
		d.failTree(err, path)
		return nil
	}
	bad := func() []*yaml.Node {
		d.failTree(errorf(val.Line, path, "the value of a << merge key must be a mapping or a list of mappings, got %s", describe(val)), path)
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{val}
	case yaml.SequenceNode:
		srcs := make([]*yaml.Node, 0, len(val.Content))
		for _, item := range val.Content {
			item, err := resolve(item, path)
			if err != nil {
				d.failTree(err, path)
				return nil
			}
			if item.Kind != yaml.MappingNode {
				return bad()
			}
			srcs = append(srcs, item)
		}
		return srcs
	}
	return bad()
}

// structFields is the yaml key -> field index table of a struct type.
// The keys of a struct field tagged `yaml:",inline"` are the struct's own.
type structFields struct {
	index map[string][]int  // key -> field index path (FieldByIndex)
	names []string          // sorted keys, for hints
	opts  map[string]string // key -> `config:"..."` tag, if any
}

func (f *structFields) add(t reflect.Type, path []int) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, opt, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		idx := append(append([]int(nil), path...), i)
		if sf.IsExported() && name == "" && opt == "inline" && sf.Type.Kind() == reflect.Struct {
			f.add(sf.Type, idx)
			continue
		}
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		f.index[name] = idx
		f.names = append(f.names, name)
		if opt := sf.Tag.Get("config"); opt != "" {
			f.opts[name] = opt
		}
	}
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{index: map[string][]int{}, opts: map[string]string{}}
	f.add(t, nil)
	sort.Strings(f.names)
	fieldCache.Store(t, f)
	return f
}

// unknownKey builds the unknown key message, with a hint when a known key
// is a likely typo; hint is that key, or "".
func unknownKey(key string, known []string) (msg, hint string) {
	msg = "unknown key " + strconv.Quote(key)
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		msg += "; did you mean " + strconv.Quote(best) + "?"
	}
	return msg, best
}

// editDistance is the Levenshtein distance of a and b (bytes), capped for
// long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
