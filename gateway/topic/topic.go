// Package topic maps MQTT-style topics used by protogate devices onto the
// subjects of the embedded NATS server, and back.
//
// The mapping is the one nats-server v2.15.2 uses for its own MQTT clients
// (server/mqtt.go, mqttToNATSSubjectConversion and natsSubjectToMQTTTopic),
// so that devices behind protogate, native MQTT clients of the embedded
// server and plain NATS clients all see the same names:
//
//   - the level separator "/" becomes the token separator ".";
//   - an empty level becomes the token "/", so "/a" is "/.a", "a/" is "a./"
//     and "a//b" is "a./.b";
//   - a "." inside a level becomes "//", so "a.b/c" is "a//b.c";
//   - in filters, "+" becomes "*" and "#" becomes ">";
//   - whitespace and DEL (0x7f) cannot be mapped and are rejected.
//
// Because every level maps to exactly one non-empty token, MQTT matching of
// a topic against a filter gives the same answer as NATS matching of the
// converted subject against the converted filter, with one exception that
// the package handles explicitly: MQTT "a/#" also matches "a", so ParseFilter
// returns a second subject for the parent level.
//
// Protogate is stricter than nats-server in a few places, because device
// traffic must never reach the server's internal subjects or subscribe to
// more than the MQTT filter says. Each case is documented on the function
// that implements it.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxSubjectLen is the longest NATS subject, in bytes, that PublishSubject and
// ParseFilter return.
//
// The NATS server refuses any protocol control line longer than
// max_control_line (4096 bytes by default, MAX_CONTROL_LINE_SIZE in
// nats-server). The subject shares that line with other arguments: the reply
// subject and the header and payload sizes of a HPUB, the queue group and
// subscription id of a SUB, and the sid and reply of the MSG line the server
// writes to subscribers. Subjects may also be prefixed further, for example
// with "$MQTT.msgs." when a message is stored for native MQTT subscribers.
// 512 bytes are kept free for all of that. Message headers are not part of
// the control line; they count against max_payload instead.
const MaxSubjectLen = 4096 - 512

// maxSubjectLen is the limit the code enforces. It is MaxSubjectLen except
// in fuzz tests, which lower it so that the fuzzer reaches the length checks
// with short inputs instead of spending its time minimizing 4 KiB ones.
var maxSubjectLen = MaxSubjectLen

// Sentinel errors returned, wrapped, by PublishSubject and ParseFilter. Use
// errors.Is to test for them.
var (
	// ErrEmpty reports an empty topic or filter.
	ErrEmpty = errors.New("topic: empty topic")
	// ErrWildcard reports a wildcard in a publish topic: an MQTT wildcard
	// ("+" or "#" anywhere), or a level that would become a NATS wildcard
	// token ("*" or ">").
	ErrWildcard = errors.New("topic: wildcard not allowed in publish topic")
	// ErrBadChar reports a byte that nats-server refuses in MQTT topics:
	// whitespace that would split a NATS control line (space, tab, CR, LF,
	// form feed), DEL, NUL, or invalid UTF-8.
	ErrBadChar = errors.New("topic: unsupported character")
	// ErrReserved reports a topic or filter that would map to a subject
	// starting with "$". Such subjects belong to the NATS server ($SYS, $JS,
	// $KV, $MQTT, ...), and protogate refuses them for device traffic.
	ErrReserved = errors.New("topic: reserved subject")
	// ErrTooLong reports a subject longer than MaxSubjectLen.
	ErrTooLong = errors.New("topic: subject too long")
	// ErrInvalid reports a malformed filter, such as "a/#/b", "a+" or a bad
	// "$share/" prefix, whose conversion would not be a valid NATS subject
	// or would not mean what the MQTT filter says.
	ErrInvalid = errors.New("topic: invalid topic filter")
)

// sharePrefix starts an MQTT 5 style shared subscription filter,
// "$share/<group>/<filter>".
const sharePrefix = "$share/"

// Filter is an MQTT topic filter converted to NATS subscriptions.
type Filter struct {
	// Subjects holds the NATS subjects to subscribe to. It has one element,
	// or two when the filter ends in "/#": Subjects[0] is "<parent>.>" and
	// Subjects[1] is "<parent>", because MQTT "a/#" also matches "a".
	Subjects []string
	// Queue is the NATS queue group for a shared subscription
	// ("$share/<group>/<filter>"), and empty otherwise.
	Queue string
	// Topic is the MQTT filter without any "$share/<group>/" prefix.
	Topic string
}

// PublishSubject converts an MQTT topic name to the NATS subject to publish
// on.
//
// The conversion is exactly nats-server's. In addition to the checks the
// server makes (no "+" or "#", no whitespace or DEL, valid UTF-8 without NUL),
// the result must be a valid literal NATS subject: a topic with a level that
// is exactly "*" or ">", such as "a/*/b" or "a/>", is refused with
// ErrWildcard, where nats-server would publish on the wildcard subject. A
// topic mapping to a subject that starts with "$" is refused with
// ErrReserved, and one longer than MaxSubjectLen with ErrTooLong.
func PublishSubject(topic string) (string, error) {
	if topic == "" {
		return "", ErrEmpty
	}
	// A subject is never shorter than its topic, so this bounds the work
	// done on oversized input.
	if len(topic) > maxSubjectLen {
		return "", fmt.Errorf("%w: topic is %d bytes, limit %d", ErrTooLong, len(topic), maxSubjectLen)
	}
	if err := checkChars(topic); err != nil {
		return "", err
	}
	subject, err := convert(topic, false)
	if err != nil {
		return "", err
	}
	if err := checkSubject(subject, true); err != nil {
		return "", err
	}
	return subject, nil
}

// ParseFilter converts an MQTT topic filter to the NATS subscriptions that
// implement it.
//
// "+" becomes "*" and "#" becomes ">". A filter ending in "/#" yields two
// subjects, "<parent>.>" and "<parent>", like nats-server; "#" alone yields
// only ">". A shared subscription "$share/<group>/<filter>" becomes a queue
// subscription with Queue set to group on the converted filter; an empty or
// missing group or filter, or a group containing "+" or "#", is ErrInvalid.
//
// Any other filter mapping to a subject that starts with "$" is ErrReserved.
// Subscriptions whose filter starts with a wildcard ("#", "+", "+/...") must
// still not be given messages on "$" subjects (MQTT-4.7.2-1); Match applies
// that rule, and callers delivering messages must apply it too.
//
// nats-server checks a converted filter only by inserting it into its
// subscription list. Protogate is stricter and returns ErrInvalid for:
//
//   - "+" or "#" that does not occupy a whole level, such as "a+" or "a/b#"
//     (MQTT-4.7.1-2, MQTT-4.7.1-3), which nats-server would take as a
//     literal token;
//   - a level that is exactly "*" or ">", such as "a/*/b", which nats-server
//     would turn into a NATS wildcard although MQTT treats it as a literal
//     that no publish topic can contain (PublishSubject refuses it).
//
// It also omits the parent subject "/" for the filter "/#": that subject
// stands for the empty topic, which is not a valid MQTT topic name.
//
// The subject is limited to MaxSubjectLen bytes, counting the queue group and
// a separating space for shared subscriptions, since both travel on the SUB
// control line.
func ParseFilter(filter string) (Filter, error) {
	if filter == "" {
		return Filter{}, ErrEmpty
	}
	if len(filter) > maxSubjectLen+len(sharePrefix) {
		return Filter{}, fmt.Errorf("%w: filter is %d bytes, limit %d", ErrTooLong, len(filter), maxSubjectLen)
	}
	if err := checkChars(filter); err != nil {
		return Filter{}, err
	}
	group, inner, err := splitShare(filter)
	if err != nil {
		return Filter{}, err
	}
	subject, err := convert(inner, true)
	if err != nil {
		return Filter{}, err
	}
	if n := lineLen(subject, group); n > maxSubjectLen {
		return Filter{}, fmt.Errorf("%w: subscription is %d bytes, limit %d", ErrTooLong, n, maxSubjectLen)
	}
	if err := checkSubject(subject, false); err != nil {
		return Filter{}, err
	}
	f := Filter{Subjects: []string{subject}, Queue: group, Topic: inner}
	if parent, ok := parentSubject(subject); ok {
		f.Subjects = append(f.Subjects, parent)
	}
	return f, nil
}

// TopicOf converts a NATS subject to the MQTT topic that nats-server would
// deliver it on: "/." and "./" become "/", "//" becomes ".", "." becomes "/",
// and a "/" in any other position is dropped.
//
// TopicOf(PublishSubject(t)) is t for every topic t that PublishSubject
// accepts. A subject published by a plain NATS client need not come from any
// topic; its result may then be empty or contain "+", "#" or a leading "$",
// and callers delivering it to devices should check it, for example with
// PublishSubject.
func TopicOf(subject string) string {
	if !strings.ContainsAny(subject, "./") {
		return subject
	}
	var b strings.Builder
	b.Grow(len(subject))
	for i := 0; i < len(subject); i++ {
		switch c := subject[i]; c {
		case '.':
			b.WriteByte('/')
		case '/':
			if i+1 == len(subject) {
				break
			}
			switch subject[i+1] {
			case '.':
				// "/." is an empty level followed by a separator.
				b.WriteByte('/')
				i++
			case '/':
				// "//" is an escaped dot.
				b.WriteByte('.')
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkChars rejects bytes that nats-server refuses in MQTT topics: the
// whitespace that would split a NATS control line, DEL, NUL and invalid
// UTF-8.
func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\f', 0x7f, 0:
			return fmt.Errorf("%w %q at byte %d", ErrBadChar, c, i)
		}
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadChar)
	}
	return nil
}

// convert maps an MQTT topic name (filter false) or topic filter (filter
// true) to a NATS subject, level by level. The input must have passed
// checkChars.
//
// nats-server converts with a single left-to-right scan that looks at the
// neighbouring characters of each "/". Mapping every level independently
// ("" to "/", "+" to "*", "#" to ">", "." to "//") and joining the results
// with "." gives the same subject, and makes the level structure explicit.
func convert(t string, filter bool) (string, error) {
	if !strings.ContainsAny(t, "/.+#") && t != "*" && t != ">" {
		return checkLength(t)
	}
	var b strings.Builder
	b.Grow(len(t) + 8)
	rest := t
	for first := true; ; first = false {
		level, tail, more := strings.Cut(rest, "/")
		if !first {
			b.WriteByte('.')
		}
		switch {
		case level == "":
			b.WriteByte('/')
		case level == "+" && filter:
			b.WriteByte('*')
		case level == "#" && filter:
			if more {
				return "", fmt.Errorf("%w: %q: # must be the last level", ErrInvalid, t)
			}
			b.WriteByte('>')
		case strings.ContainsAny(level, "+#"):
			if !filter {
				return "", fmt.Errorf("%w: %q", ErrWildcard, t)
			}
			return "", fmt.Errorf("%w: %q: + and # must occupy a whole level", ErrInvalid, t)
		case level == "*" || level == ">":
			if !filter {
				return "", fmt.Errorf("%w: %q: level %q is a NATS wildcard", ErrWildcard, t, level)
			}
			return "", fmt.Errorf("%w: %q: level %q is a NATS wildcard, use + or #", ErrInvalid, t, level)
		default:
			if !strings.Contains(level, ".") {
				b.WriteString(level)
				break
			}
			for i := 0; i < len(level); i++ {
				if level[i] == '.' {
					b.WriteString("//")
				} else {
					b.WriteByte(level[i])
				}
			}
		}
		if !more {
			break
		}
		rest = tail
	}
	return checkLength(b.String())
}

// checkLength rejects subjects longer than MaxSubjectLen.
func checkLength(subject string) (string, error) {
	if len(subject) > maxSubjectLen {
		return "", fmt.Errorf("%w: subject is %d bytes, limit %d", ErrTooLong, len(subject), maxSubjectLen)
	}
	return subject, nil
}

// checkSubject applies the final checks to a converted subject: it must not
// start with "$", and it must be a valid NATS subject (a literal one when
// literal is set), as nats-server's IsValidSubject and IsValidPublishSubject
// define them. convert cannot produce an invalid subject; the validity check
// guards that invariant.
func checkSubject(subject string, literal bool) error {
	if subject[0] == '$' {
		return fmt.Errorf("%w: %q starts with $", ErrReserved, subject)
	}
	if !validSubject(subject, literal) {
		return fmt.Errorf("%w: %q is not a valid NATS subject", ErrInvalid, subject)
	}
	return nil
}

// validSubject reports whether s is a valid NATS subject: non-empty tokens
// without whitespace, and nothing after a ">" token. When literal is set, no
// token may be a wildcard.
func validSubject(s string, literal bool) bool {
	if s == "" {
		return false
	}
	fwc := false
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || fwc || strings.ContainsAny(tok, " \t\n\r\f") {
			return false
		}
		switch tok {
		case "*":
			if literal {
				return false
			}
		case ">":
			if literal {
				return false
			}
			fwc = true
		}
	}
	return true
}

// parentSubject returns the extra subject that makes a converted "a/#"
// filter also match "a", as nats-server's mqttNeedSubForLevelUp does. The
// parent "/" of "/#" is left out, see ParseFilter.
func parentSubject(subject string) (string, bool) {
	parent, ok := strings.CutSuffix(subject, ".>")
	if !ok || parent == "" || parent == "/" {
		return "", false
	}
	return parent, true
}

// splitShare splits "$share/<group>/<filter>" into group and filter. A
// filter without the prefix is returned unchanged with an empty group.
func splitShare(filter string) (group, inner string, err error) {
	rest, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		if filter == strings.TrimSuffix(sharePrefix, "/") {
			return "", "", fmt.Errorf("%w: %q: shared subscription without group and filter", ErrInvalid, filter)
		}
		return "", filter, nil
	}
	group, inner, ok = strings.Cut(rest, "/")
	switch {
	case group == "":
		return "", "", fmt.Errorf("%w: %q: shared subscription without group", ErrInvalid, filter)
	case strings.ContainsAny(group, "+#"):
		return "", "", fmt.Errorf("%w: %q: share group must not contain + or #", ErrInvalid, filter)
	case !ok || inner == "":
		return "", "", fmt.Errorf("%w: %q: shared subscription without filter", ErrInvalid, filter)
	}
	return group, inner, nil
}

// lineLen is the length of the subject and queue group arguments of a SUB
// control line.
func lineLen(subject, queue string) int {
	if queue == "" {
		return len(subject)
	}
	return len(subject) + 1 + len(queue)
}
