package topic

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// sentinels are the errors every failure must wrap.
var sentinels = []error{ErrEmpty, ErrWildcard, ErrBadChar, ErrReserved, ErrTooLong, ErrInvalid}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// lowerLimit makes the length limit small for the duration of a fuzz test,
// so that inputs exercising it stay short and cheap to minimize.
func lowerLimit(f *testing.F) {
	old := maxSubjectLen
	maxSubjectLen = 64
	f.Cleanup(func() { maxSubjectLen = old })
}

func addSeeds(f *testing.F, extra ...string) {
	for _, v := range topicVectors {
		f.Add(v.topic)
	}
	for _, s := range extra {
		f.Add(s)
	}
}

func FuzzPublishSubject(f *testing.F) {
	lowerLimit(f)
	addSeeds(f, strings.Repeat("a", 65), strings.Repeat(".", 33), "", "+", "#", "a/+", "a/#", "a/*/b", "a/>", "a b", "a\x7f", "$SYS/x", "\xff", "a\x00")
	f.Fuzz(func(t *testing.T, topic string) {
		subject, err := PublishSubject(topic)
		oracle, oracleOK := serverConvert(topic, false)
		if err != nil {
			if !wrapsSentinel(err) || !strings.HasPrefix(err.Error(), "topic: ") {
				t.Fatalf("PublishSubject(%q) error %q wraps no sentinel", topic, err)
			}
			// Anything nats-server converts to a literal, unreserved
			// subject of acceptable length from valid UTF-8 without NUL
			// must be accepted.
			if oracleOK && topic != "" && utf8.ValidString(topic) && !strings.ContainsRune(topic, 0) &&
				oracle[0] != '$' && len(oracle) <= maxSubjectLen && wellFormed(oracle) &&
				!strings.Contains("."+oracle+".", ".*.") && !strings.Contains("."+oracle+".", ".>.") {
				t.Fatalf("PublishSubject(%q) = %v, nats-server gives %q", topic, err, oracle)
			}
			return
		}
		if !oracleOK || subject != oracle {
			t.Fatalf("PublishSubject(%q) = %q, nats-server gives %q (%v)", topic, subject, oracle, oracleOK)
		}
		if !wellFormed(subject) || strings.ContainsAny(subject, "\x00") {
			t.Fatalf("PublishSubject(%q) = %q is not a well-formed subject", topic, subject)
		}
		for tok := range strings.SplitSeq(subject, ".") {
			if tok == "*" || tok == ">" {
				t.Fatalf("PublishSubject(%q) = %q has a wildcard token", topic, subject)
			}
		}
		if subject[0] == '$' || len(subject) > maxSubjectLen {
			t.Fatalf("PublishSubject(%q) = %q is reserved or too long", topic, subject)
		}
		if back := TopicOf(subject); back != topic {
			t.Fatalf("TopicOf(PublishSubject(%q)) = %q via %q", topic, back, subject)
		}
		if !Match(topic, topic) {
			t.Fatalf("Match(%q, %q) is false", topic, topic)
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	lowerLimit(f)
	for _, v := range topicVectors {
		f.Add(v.topic, v.topic)
	}
	for _, s := range [][2]string{
		{"#", "a/b"}, {"a/#", "a"}, {"/#", "/"}, {"+/+", "/"}, {"a/+/c", "a//c"},
		{"$share/g/a/#", "a/b"}, {"$share/g", "g"}, {"a/#/b", "a/x/b"}, {"a+", "a+"},
		{"foo/*/bar", "foo/x/bar"}, {"$share/g/" + strings.Repeat("a", 60), "a"}, {"$SYS/#", "$SYS/a"}, {"a\tb", "a"}, {"+/.", "./."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		parsed, err := ParseFilter(filter)
		if err != nil {
			if !wrapsSentinel(err) || !strings.HasPrefix(err.Error(), "topic: ") {
				t.Fatalf("ParseFilter(%q) error %q wraps no sentinel", filter, err)
			}
			if Match(filter, topic) && !errors.Is(err, ErrReserved) && !errors.Is(err, ErrTooLong) &&
				!errors.Is(err, ErrBadChar) && !strings.Contains(filter, "*") && !strings.Contains(filter, ">") {
				t.Fatalf("Match(%q, %q) is true but ParseFilter failed: %v", filter, topic, err)
			}
			return
		}
		inner := parsed.Topic
		if inner == "" || !strings.HasSuffix(filter, inner) {
			t.Fatalf("ParseFilter(%q).Topic = %q", filter, inner)
		}
		if (parsed.Queue != "") != strings.HasPrefix(filter, sharePrefix) {
			t.Fatalf("ParseFilter(%q).Queue = %q", filter, parsed.Queue)
		}
		if parsed.Queue != "" && filter != sharePrefix+parsed.Queue+"/"+inner {
			t.Fatalf("ParseFilter(%q) = queue %q topic %q", filter, parsed.Queue, inner)
		}
		subs := parsed.Subjects
		if len(subs) == 0 || len(subs) > 2 {
			t.Fatalf("ParseFilter(%q).Subjects = %q", filter, subs)
		}
		for _, s := range subs {
			if !wellFormed(s) || s[0] == '$' || len(s) > maxSubjectLen {
				t.Fatalf("ParseFilter(%q) subject %q is not well formed", filter, s)
			}
		}
		oracle, ok := serverConvert(inner, true)
		if !ok || oracle != subs[0] {
			t.Fatalf("ParseFilter(%q) = %q, nats-server gives %q", filter, subs[0], oracle)
		}
		if strings.Contains(inner, "#") != strings.HasSuffix("."+subs[0], ".>") {
			t.Fatalf("ParseFilter(%q) = %q: # and > disagree", filter, subs[0])
		}
		wantParent := strings.HasSuffix(inner, "/#") && inner != "/#"
		if wantParent != (len(subs) == 2) || (wantParent && subs[1]+".>" != subs[0]) {
			t.Fatalf("ParseFilter(%q) = %q: wrong parent subject", filter, subs)
		}
		// The reverse mapping gives back the filter, with NATS
		// wildcards in place of MQTT ones.
		if back, want := TopicOf(subs[0]), strings.NewReplacer("+", "*", "#", ">").Replace(inner); back != want {
			t.Fatalf("TopicOf(%q) = %q, want %q", subs[0], back, want)
		}
		// MQTT matching agrees with NATS matching of the subjects.
		if subject, err := PublishSubject(topic); err == nil {
			nats := false
			for _, s := range subs {
				nats = nats || natsMatch(s, subject)
			}
			if got := Match(filter, topic); got != nats {
				t.Fatalf("Match(%q, %q) = %v, NATS match of %q on %q = %v", filter, topic, got, subject, subs, nats)
			}
		}
	})
}
