package topic

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// serverConvert is a test oracle: the MQTT to NATS conversion written as the
// left-to-right scan described in the reference (section 2.3) for
// nats-server's mqttToNATSSubjectConversion. It makes no validity checks
// besides the wildcard flag, so the package's level-by-level conversion can
// be compared with it.
func serverConvert(mt string, wildcardsOK bool) (string, bool) {
	var out []byte
	for i := 0; i < len(mt); i++ {
		switch c := mt[i]; c {
		case '/':
			switch {
			case i == 0 || out[len(out)-1] == '.':
				out = append(out, '/', '.')
			case i == len(mt)-1 || mt[i+1] == '/':
				out = append(out, '.', '/')
			default:
				out = append(out, '.')
			}
		case '.':
			out = append(out, '/', '/')
		case ' ', '\t', '\n', '\r', '\f', 0x7f:
			return "", false
		case '+', '#':
			if !wildcardsOK {
				return "", false
			}
			if c == '+' {
				out = append(out, '*')
			} else {
				out = append(out, '>')
			}
		default:
			out = append(out, c)
		}
	}
	if len(out) > 0 && out[len(out)-1] == '.' {
		out = append(out, '/')
	}
	return string(out), true
}

// natsMatch reports whether a literal subject matches a NATS subscription
// subject, with "*" matching one token and ">" one or more.
func natsMatch(sub, subject string) bool {
	st := strings.Split(sub, ".")
	tt := strings.Split(subject, ".")
	for i, s := range st {
		if s == ">" {
			return len(tt) > i
		}
		if i >= len(tt) || (s != "*" && s != tt[i]) {
			return false
		}
	}
	return len(st) == len(tt)
}

// wellFormed reports whether s is a NATS subject with no empty tokens, no
// whitespace, and ">" only as the last token.
func wellFormed(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n\f\x7f") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || (tok == ">" && i != len(toks)-1) {
			return false
		}
	}
	return true
}

// topicVectors are the topic/subject pairs of the reference, section 2.3
// ("Verified examples" and "Additional vectors"), and of nats-server's
// TestMQTTTopicAndSubjectConversion. All convert in both directions.
var topicVectors = []struct{ topic, subject string }{
	// Verified end to end with mosquitto (reference, 2.3).
	{"foo/bar", "foo.bar"},
	{"/foo/bar", "/.foo.bar"},
	{"foo/bar/", "foo.bar./"},
	{"foo//bar", "foo./.bar"},
	{"foo.bar", "foo//bar"},
	{"sensors/dev1/temp", "sensors.dev1.temp"},
	// Additional vectors (reference, 2.3).
	{"/", "/./"},
	{"//", "/././"},
	{"///foo//", "/././.foo././"},
	{".", "//"},
	{"..", "////"},
	{"./foo/.", "//.foo.//"},
	{"foo.bar/baz", "foo//bar.baz"},
	// nats-server TestMQTTTopicAndSubjectConversion.
	{"///", "/./././"},
	{"////", "/././././"},
	{"foo", "foo"},
	{"/foo", "/.foo"},
	{"//foo", "/./.foo"},
	{"///foo", "/././.foo"},
	{"///foo/", "/././.foo./"},
	{"///foo///", "/././.foo./././"},
	{"//.foo.//", "/././/foo//././"},
	{"/foo/bar/", "/.foo.bar./"},
	{"foo/bar/baz", "foo.bar.baz"},
	{"/foo/bar/baz", "/.foo.bar.baz"},
	{"/foo/bar/baz/", "/.foo.bar.baz./"},
	{"bar/", "bar./"},
	{"bar//", "bar././"},
	{"bar///", "bar./././"},
	{"foo///bar", "foo././.bar"},
	{"foo////bar", "foo./././.bar"},
	{"...", "//////"},
	{"./", "//./"},
	{".//.", "//././/"},
	{"././.", "//.//.//"},
	{"././/.", "//.//././/"},
	{".foo", "//foo"},
	{"foo.", "foo//"},
	{".foo.", "//foo//"},
	{"foo../bar/", "foo////.bar./"},
	{"foo../bar/.", "foo////.bar.//"},
	{"/foo/", "/.foo./"},
	// NATS wildcard characters inside a level stay literal.
	{"foo*/bar", "foo*.bar"},
	{"foo>/bar", "foo>.bar"},
	{"a/*b/>c", "a.*b.>c"},
	// Not special in topics.
	{"a$/b", "a$.b"},
	{"/$SYS", "/.$SYS"},
	{"spBv1.0/group/NBIRTH/node", "spBv1//0.group.NBIRTH.node"},
	{"über/temp°C", "über.temp°C"},
	{"a\x01b", "a\x01b"},
	{"a\vb", "a\vb"},
}

func TestPublishSubjectVectors(t *testing.T) {
	for _, v := range topicVectors {
		got, err := PublishSubject(v.topic)
		if err != nil {
			t.Errorf("PublishSubject(%q) error: %v", v.topic, err)
			continue
		}
		if got != v.subject {
			t.Errorf("PublishSubject(%q) = %q, want %q", v.topic, got, v.subject)
		}
		if oracle, _ := serverConvert(v.topic, false); oracle != v.subject {
			t.Errorf("oracle(%q) = %q, want %q", v.topic, oracle, v.subject)
		}
	}
}

func TestTopicOfVectors(t *testing.T) {
	for _, v := range topicVectors {
		if got := TopicOf(v.subject); got != v.topic {
			t.Errorf("TopicOf(%q) = %q, want %q", v.subject, got, v.topic)
		}
	}
}

// TestTopicOfForeign checks subjects that no topic converts to, as a plain
// NATS client may publish them. The results follow nats-server's
// natsSubjectToMQTTTopic.
func TestTopicOfForeign(t *testing.T) {
	for _, v := range []struct{ subject, topic string }{
		{"", ""},
		{"/", ""},
		{"a/b", "ab"},
		{"a/", "a"},
		{"/a", "a"},
		{"///", "."},
		{"a.*.>", "a/*/>"},
		{"a.+.#", "a/+/#"},
		{"$JS.API.INFO", "$JS/API/INFO"},
		{"a..b", "a//b"},
		{".", "/"},
	} {
		if got := TopicOf(v.subject); got != v.topic {
			t.Errorf("TopicOf(%q) = %q, want %q", v.subject, got, v.topic)
		}
	}
}

func TestPublishSubjectErrors(t *testing.T) {
	for _, v := range []struct {
		topic string
		want  error
	}{
		{"", ErrEmpty},
		// MQTT wildcards (nats-server: "wildcards not allowed in publish").
		{"foo/+", ErrWildcard},
		{"foo/#", ErrWildcard},
		{"+", ErrWildcard},
		{"#", ErrWildcard},
		{"a+b", ErrWildcard},
		{"a/b#", ErrWildcard},
		// Levels that would become NATS wildcards (stricter than
		// nats-server, which publishes on the wildcard subject).
		{"foo/*/bar", ErrWildcard},
		{"a/>", ErrWildcard},
		{"*", ErrWildcard},
		{">", ErrWildcard},
		{"foo/*", ErrWildcard},
		// Whitespace and DEL (nats-server: "not supported").
		{"foo bar", ErrBadChar},
		{"foo\tbar", ErrBadChar},
		{"foo\nbar", ErrBadChar},
		{"foo\rbar", ErrBadChar},
		{"foo\fbar", ErrBadChar},
		{"foo\x7fbar", ErrBadChar},
		{" ", ErrBadChar},
		// Rejected by nats-server's MQTT packet parser (mqttValidateTopic).
		{"foo\x00bar", ErrBadChar},
		{"foo\xffbar", ErrBadChar},
		// Subjects starting with "$".
		{"$SYS/x", ErrReserved},
		{"$JS/API/STREAM/DELETE/x", ErrReserved},
		{"$MQTT/msgs/a", ErrReserved},
		{"$", ErrReserved},
		{"$share/g/a", ErrReserved},
		// Length.
		{strings.Repeat("a", MaxSubjectLen+1), ErrTooLong},
		{strings.Repeat(".", MaxSubjectLen/2+1), ErrTooLong},
		{strings.Repeat("a/", MaxSubjectLen/2) + "/", ErrTooLong},
	} {
		got, err := PublishSubject(v.topic)
		if !errors.Is(err, v.want) {
			t.Errorf("PublishSubject(%.40q) = %q, %v; want %v", v.topic, got, err, v.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "topic: ") {
			t.Errorf("PublishSubject(%.40q) error %q lacks the package prefix", v.topic, err)
		}
	}
}

func TestPublishSubjectLengthLimit(t *testing.T) {
	exact := strings.Repeat("a", MaxSubjectLen)
	if got, err := PublishSubject(exact); err != nil || got != exact {
		t.Errorf("PublishSubject of %d bytes: %v", MaxSubjectLen, err)
	}
	// Each "." doubles, so the topic is short but the subject is not.
	dots := strings.Repeat(".", MaxSubjectLen/2)
	if _, err := PublishSubject(dots); err != nil {
		t.Errorf("PublishSubject of %d dots: %v", len(dots), err)
	}
	if _, err := PublishSubject(dots + "x"); !errors.Is(err, ErrTooLong) {
		t.Errorf("PublishSubject of %d dots and x: %v, want ErrTooLong", len(dots), err)
	}
}

func TestRoundTrip(t *testing.T) {
	topics := []string{"a", "a/b/c", "/", "a//", "//a", "a.b.c", "./.", "x/./y"}
	for _, v := range topicVectors {
		topics = append(topics, v.topic)
	}
	// Every combination of up to five characters from a small alphabet
	// that covers the special cases.
	alphabet := []string{"a", "/", ".", "*", ">"}
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		if prefix != "" {
			topics = append(topics, prefix)
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 5)
	accepted := 0
	for _, topic := range topics {
		subject, err := PublishSubject(topic)
		oracle, _ := serverConvert(topic, false)
		if err != nil {
			if errors.Is(err, ErrWildcard) && wellFormed(oracle) && !slices.ContainsFunc(strings.Split(oracle, "."), func(s string) bool { return s == "*" || s == ">" }) {
				t.Errorf("PublishSubject(%q) = %v, but %q is a literal subject", topic, err, oracle)
			}
			continue
		}
		accepted++
		if subject != oracle {
			t.Errorf("PublishSubject(%q) = %q, oracle %q", topic, subject, oracle)
		}
		if !wellFormed(subject) {
			t.Errorf("PublishSubject(%q) = %q is not well formed", topic, subject)
		}
		if back := TopicOf(subject); back != topic {
			t.Errorf("TopicOf(PublishSubject(%q)) = %q", topic, back)
		}
	}
	if accepted < 1000 {
		t.Errorf("only %d topics accepted", accepted)
	}
}

func TestParseFilterVectors(t *testing.T) {
	for _, v := range []struct {
		filter   string
		subjects []string
	}{
		// Reference, section 2.3, and nats-server TestMQTTFilterConversion.
		{"+", []string{"*"}},
		{"/+", []string{"/.*"}},
		{"+/", []string{"*./"}},
		{"/+/", []string{"/.*./"}},
		{"foo/+", []string{"foo.*"}},
		{"foo/+/", []string{"foo.*./"}},
		{"foo/+/bar", []string{"foo.*.bar"}},
		{"foo/+/+", []string{"foo.*.*"}},
		{"foo/+/+/", []string{"foo.*.*./"}},
		{"foo/+/+/bar", []string{"foo.*.*.bar"}},
		{"foo//+", []string{"foo./.*"}},
		{"foo//+/", []string{"foo./.*./"}},
		{"foo//+//", []string{"foo./.*././"}},
		{"foo//+//bar", []string{"foo./.*./.bar"}},
		{"foo///+///bar", []string{"foo././.*././.bar"}},
		{"foo.bar///+///baz", []string{"foo//bar././.*././.baz"}},
		{"foo*/bar", []string{"foo*.bar"}},
		{"foo>/bar", []string{"foo>.bar"}},
		// "#" alone needs only ">"; "a/#" also subscribes the parent.
		{"#", []string{">"}},
		{"/foo/#", []string{"/.foo.>", "/.foo"}},
		{"foo/#", []string{"foo.>", "foo"}},
		{"foo//#", []string{"foo./.>", "foo./"}},
		{"foo///#", []string{"foo././.>", "foo././"}},
		{"foo/bar/#", []string{"foo.bar.>", "foo.bar"}},
		{"foo/bar.baz/#", []string{"foo.bar//baz.>", "foo.bar//baz"}},
		{"a/#", []string{"a.>", "a"}},
		{"+/#", []string{"*.>", "*"}},
		{"a/+/#", []string{"a.*.>", "a.*"}},
		// Protogate omits nats-server's parent "/" (the empty topic).
		{"/#", []string{"/.>"}},
		// Plain topics are filters too.
		{"a/b", []string{"a.b"}},
		{"a.b", []string{"a//b"}},
		{"/", []string{"/./"}},
	} {
		f, err := ParseFilter(v.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q) error: %v", v.filter, err)
			continue
		}
		if !slices.Equal(f.Subjects, v.subjects) || f.Queue != "" || f.Topic != v.filter {
			t.Errorf("ParseFilter(%q) = %+v, want subjects %q", v.filter, f, v.subjects)
		}
		if oracle, _ := serverConvert(v.filter, true); oracle != f.Subjects[0] {
			t.Errorf("oracle(%q) = %q, ParseFilter %q", v.filter, oracle, f.Subjects[0])
		}
	}
}

func TestParseFilterShared(t *testing.T) {
	for _, v := range []struct {
		filter, queue, topic string
		subjects             []string
	}{
		{"$share/g1/a/b", "g1", "a/b", []string{"a.b"}},
		{"$share/g1/a/#", "g1", "a/#", []string{"a.>", "a"}},
		{"$share/g1/#", "g1", "#", []string{">"}},
		{"$share/group.1/+/x", "group.1", "+/x", []string{"*.x"}},
		{"$share/g//a", "g", "/a", []string{"/.a"}},
		{"$share/g/$share", "", "", nil},
	} {
		f, err := ParseFilter(v.filter)
		if v.subjects == nil {
			if !errors.Is(err, ErrReserved) {
				t.Errorf("ParseFilter(%q) = %+v, %v; want ErrReserved", v.filter, f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFilter(%q) error: %v", v.filter, err)
			continue
		}
		if f.Queue != v.queue || f.Topic != v.topic || !slices.Equal(f.Subjects, v.subjects) {
			t.Errorf("ParseFilter(%q) = %+v, want queue %q topic %q subjects %q", v.filter, f, v.queue, v.topic, v.subjects)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	long := strings.Repeat("a", MaxSubjectLen)
	for _, v := range []struct {
		filter string
		want   error
	}{
		{"", ErrEmpty},
		// Whitespace, DEL, NUL, bad UTF-8.
		{"a b", ErrBadChar},
		{"a/\t", ErrBadChar},
		{"a\n", ErrBadChar},
		{"\r", ErrBadChar},
		{"a\f/#", ErrBadChar},
		{"a\x7f", ErrBadChar},
		{"a\x00", ErrBadChar},
		{"\xc3", ErrBadChar},
		{"$share/g 1/a", ErrBadChar},
		// "#" not last: invalid NATS subject for nats-server too.
		{"a/#/b", ErrInvalid},
		{"#/b", ErrInvalid},
		{"#/", ErrInvalid},
		{"#/#", ErrInvalid},
		// Wildcards not occupying a whole level (stricter than
		// nats-server, which subscribes to the literal token).
		{"a#", ErrInvalid},
		{"a/b#", ErrInvalid},
		{"a+", ErrInvalid},
		{"+a/b", ErrInvalid},
		{"a/++", ErrInvalid},
		{"##", ErrInvalid},
		// NATS wildcard levels (stricter than nats-server).
		{"foo/*/bar", ErrInvalid},
		{"foo/*/bar/*", ErrInvalid},
		{"foo/>", ErrInvalid},
		{"foo/*/bar/>", ErrInvalid},
		{"*", ErrInvalid},
		{">", ErrInvalid},
		// Bad shares.
		{"$share", ErrInvalid},
		{"$share/", ErrInvalid},
		{"$share//a", ErrInvalid},
		{"$share/g", ErrInvalid},
		{"$share/g/", ErrInvalid},
		{"$share/+/a", ErrInvalid},
		{"$share/g#/a", ErrInvalid},
		{"$share/g/a/#/b", ErrInvalid},
		// Reserved subjects.
		{"$SYS/#", ErrReserved},
		{"$JS/API/#", ErrReserved},
		{"$MQTT/msgs/+", ErrReserved},
		{"$", ErrReserved},
		{"$sharex/g/a", ErrReserved},
		{"$queue/a", ErrReserved},
		{"$share/g/$SYS/#", ErrReserved},
		// Length, including the queue group on the SUB line.
		{long + "a", ErrTooLong},
		{long[:MaxSubjectLen-1] + "/#", ErrTooLong},
		{"$share/g/" + long[:MaxSubjectLen-1], ErrTooLong},
		{"$share/g/" + long + long, ErrTooLong},
	} {
		f, err := ParseFilter(v.filter)
		if !errors.Is(err, v.want) {
			t.Errorf("ParseFilter(%.40q) = %.40q, %v; want %v", v.filter, f.Subjects, err, v.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "topic: ") {
			t.Errorf("ParseFilter(%.40q) error %q lacks the package prefix", v.filter, err)
		}
	}
	// Exactly at the limit.
	for _, filter := range []string{long, "$share/g/" + long[:MaxSubjectLen-2], long[:MaxSubjectLen-2] + "/#"} {
		if _, err := ParseFilter(filter); err != nil {
			t.Errorf("ParseFilter of %d bytes: %v", len(filter), err)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, v := range []struct {
		filter, topic string
		want          bool
	}{
		// "#" includes the parent level (reference 2.3, mosquitto).
		{"a/#", "a", true},
		{"a/#", "a/x", true},
		{"a/#", "a/x/y", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"#", "a", true},
		{"#", "/", true},
		{"#", "a/b/c", true},
		{"/#", "/", true},
		{"/#", "/a", true},
		{"/#", "a", false},
		{"a/b/#", "a", false},
		{"a/b/#", "a/b", true},
		// "+" is exactly one level, possibly empty.
		{"sensors/+/temp", "sensors/d1/temp", true},
		{"sensors/+/temp", "sensors/d1/hum", false},
		{"sensors/+/temp", "sensors//temp", true},
		{"sensors/+/temp", "sensors/d1/x/temp", false},
		{"+", "a", true},
		{"+", "/", false},
		{"+/+", "/", true},
		{"/+", "/", true},
		{"+", "", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"+/#", "a", true},
		{"+/+/#", "a", false},
		// Literal levels, including NATS characters.
		{"a.b/c", "a.b/c", true},
		{"a.b/c", "a/b/c", false},
		{"a/*", "a/*", true},
		{"a/*", "a/b", false},
		{"a/>", "a/b/c", false},
		{"a", "a/", false},
		{"a/", "a", false},
		// "$" topics (MQTT-4.7.2-1).
		{"#", "$SYS/x", false},
		{"+", "$SYS", false},
		{"+/x", "$SYS/x", false},
		{"+/#", "$SYS/x", false},
		{"$share/g/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/#", "a/$x", true},
		{"/#", "/$SYS", true},
		// Shared subscriptions match like their inner filter.
		{"$share/g/a/+", "a/b", true},
		{"$share/g/a/+", "b/b", false},
		{"$share/g", "g", false},
		{"$share", "$share", false},
		// Invalid filters and topics never match.
		{"", "", false},
		{"", "a", false},
		{"a", "", false},
		{"a/#/b", "a/x/b", false},
		{"#/b", "a/b", false},
		{"a#", "a#", false},
		{"a+", "a+", false},
		{"a/+b", "a/+b", false},
		{"a/b/c#", "a/x", false},
		{"+", "+", false},
		{"#", "#", false},
		{"a/+", "a/#", false},
	} {
		if got := Match(v.filter, v.topic); got != v.want {
			t.Errorf("Match(%q, %q) = %v, want %v", v.filter, v.topic, got, v.want)
		}
	}
}

// TestMatchAgreesWithNATS checks, over all short filters and topics from a
// small alphabet, that Match agrees with NATS matching of the subjects that
// ParseFilter and PublishSubject produce.
func TestMatchAgreesWithNATS(t *testing.T) {
	var gen func(alphabet []string, prefix string, n int, out *[]string)
	gen = func(alphabet []string, prefix string, n int, out *[]string) {
		if prefix != "" {
			*out = append(*out, prefix)
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(alphabet, prefix+c, n-1, out)
		}
	}
	var filters, topics []string
	gen([]string{"a", "b", "/", "+", "#", "."}, "", 5, &filters)
	gen([]string{"a", "b", "/", "."}, "", 5, &topics)
	pairs := 0
	for _, filter := range filters {
		f, err := ParseFilter(filter)
		if err != nil {
			if Match(filter, "a") {
				t.Errorf("Match(%q, a) is true, ParseFilter: %v", filter, err)
			}
			continue
		}
		for _, topic := range topics {
			subject, err := PublishSubject(topic)
			if err != nil {
				t.Fatalf("PublishSubject(%q): %v", topic, err)
			}
			nats := slices.ContainsFunc(f.Subjects, func(s string) bool { return natsMatch(s, subject) })
			if got := Match(filter, topic); got != nats {
				t.Errorf("Match(%q, %q) = %v, NATS match of %q on %q = %v", filter, topic, got, subject, f.Subjects, nats)
			}
			pairs++
		}
	}
	t.Logf("%d filter/topic pairs", pairs)
}
