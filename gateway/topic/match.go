package topic

import "strings"

// Match reports whether the MQTT topic name topic matches the MQTT topic
// filter filter.
//
// "+" matches exactly one level, which may be empty, and "#" matches the
// parent level and any number of levels below it, so "a/#" matches "a",
// "a/b" and "a/b/c". A "$share/<group>/" prefix is ignored: a shared
// subscription matches what its inner filter matches. Following MQTT-4.7.2-1,
// a filter starting with a wildcard ("#", "+", "+/...") does not match a
// topic starting with "$".
//
// Match works on MQTT syntax only: "*", ">" and "." are ordinary characters.
// It returns false when filter is not a valid MQTT topic filter (empty, "+"
// or "#" not occupying a whole level, "#" not last, a malformed share) or
// topic is not a valid topic name (empty, or containing "+" or "#"). For a
// filter and topic that ParseFilter and PublishSubject accept, Match agrees
// with NATS matching of the converted subjects.
func Match(filter, topic string) bool {
	if strings.HasPrefix(filter, sharePrefix) || filter == strings.TrimSuffix(sharePrefix, "/") {
		_, inner, err := splitShare(filter)
		if err != nil {
			return false
		}
		filter = inner
	}
	if filter == "" || topic == "" || strings.ContainsAny(topic, "+#") {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		flevel, frest, fmore := strings.Cut(filter, "/")
		if flevel == "#" {
			// "#" matches everything from here on, including nothing
			// at all (the parent level), but must be the last level.
			return !fmore
		}
		if flevel != "+" && strings.ContainsAny(flevel, "+#") {
			return false
		}
		tlevel, trest, tmore := strings.Cut(topic, "/")
		if flevel != "+" && flevel != tlevel {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			// The topic ends here; only a trailing "#" can still match.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}
