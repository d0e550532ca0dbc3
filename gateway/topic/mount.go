package topic

import "strings"

// Mount prefixes topic with mountpoint, as an EMQX gateway mountpoint does:
// Mount("tenant1/", "a/b") is "tenant1/a/b". The mountpoint is joined as is,
// so it normally ends in "/".
//
// For a shared subscription filter "$share/<group>/<filter>" the mountpoint
// is inserted before the inner filter, giving
// "$share/<group>/<mountpoint><filter>", like EMQX does; prefixing the whole
// string would turn the share into an ordinary literal filter. A topic that
// starts with "$share/" but has no group separator is returned unchanged, and
// ParseFilter then rejects it.
//
// Mount the topic before converting it with PublishSubject or ParseFilter.
func Mount(mountpoint, topic string) string {
	if mountpoint == "" {
		return topic
	}
	if rest, ok := strings.CutPrefix(topic, sharePrefix); ok {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return topic
		}
		n := len(sharePrefix) + i + 1
		return topic[:n] + mountpoint + topic[n:]
	}
	return mountpoint + topic
}

// Unmount removes mountpoint from the front of topic, for delivering a
// message to a device under the topic it subscribed to. It reports false,
// and returns topic unchanged, when topic does not start with mountpoint. An
// empty mountpoint always succeeds.
func Unmount(mountpoint, topic string) (string, bool) {
	return strings.CutPrefix(topic, mountpoint)
}

// ExpandMountpoint replaces the EMQX placeholders "${clientid}" and
// "${username}" in mountpoint with clientID and username, in a single pass,
// so a value that itself contains a placeholder is not expanded again.
//
// An empty value counts as unset and leaves its placeholder in place, as EMQX
// does for an undefined username; any other "${...}" placeholder is also left
// as is. The values are inserted verbatim: a client ID containing "/", "+"
// or "#" changes the level structure of the mountpoint, so callers that
// isolate devices by mountpoint should restrict the identifiers they accept.
func ExpandMountpoint(mountpoint, clientID, username string) string {
	if !strings.Contains(mountpoint, "${") {
		return mountpoint
	}
	var pairs []string
	if clientID != "" {
		pairs = append(pairs, "${clientid}", clientID)
	}
	if username != "" {
		pairs = append(pairs, "${username}", username)
	}
	if len(pairs) == 0 {
		return mountpoint
	}
	return strings.NewReplacer(pairs...).Replace(mountpoint)
}
