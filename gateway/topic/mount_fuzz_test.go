package topic

import (
	"strings"
	"testing"
)

// FuzzMount checks Mount, Unmount and ExpandMountpoint:
//
//   - Unmount undoes Mount for every topic that is not a shared
//     subscription; a share keeps its group and gets the mountpoint in
//     front of its inner filter;
//   - for a mountpoint that is a run of whole levels (ends in "/", no
//     wildcard, not a share), mounting both sides keeps an MQTT match, and
//     a match of the mounted pair holds unmounted too for a topic that
//     does not start with "$" (which the mountpoint would hide from a
//     leading wildcard);
//   - ExpandMountpoint is a single left-to-right pass (a value holding a
//     placeholder is not expanded again) that leaves an empty value's
//     placeholder in place.
func FuzzMount(f *testing.F) {
	for _, s := range [][5]string{
		{"tenant1/", "a/b", "a/#", "c", "u"},
		{"ct/", "$share/g/a/+", "a/x", "c", "u"},
		{"ct/", "$share/g", "g", "c", "u"},
		{"${clientid}/", "a", "+", "dev-1", ""},
		{"${username}/${clientid}/", "x/y", "x/#", "${clientid}", "${username}"},
		{"${clientid}/${unknown}/", "#", "a", "", "u"},
		{"", "$SYS/x", "#", "c", "u"},
		{"m/", "$SYS/x", "+/x", "c", "u"},
		{"$m/", "a", "#", "a/#", "+"},
		{"${client", "id}", "${clientid}", "c", "u"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, mp, topic, filter, clientID, username string) {
		mounted := Mount(mp, topic)
		if rest, ok := strings.CutPrefix(topic, sharePrefix); ok && mp != "" {
			if group, inner, ok := strings.Cut(rest, "/"); ok {
				if want := sharePrefix + group + "/" + mp + inner; mounted != want {
					t.Fatalf("Mount(%q, %q) = %q, want %q", mp, topic, mounted, want)
				}
			} else if mounted != topic {
				t.Fatalf("Mount(%q, %q) = %q: a share without a group changed", mp, topic, mounted)
			}
		} else if back, ok := Unmount(mp, mounted); !ok || back != topic {
			t.Fatalf("Unmount(%q, Mount(%q, %q) = %q) = %q, %v", mp, mp, topic, mounted, back, ok)
		}

		if levelPrefix(mp) {
			m := Match(filter, topic)
			mm := Match(Mount(mp, filter), mounted)
			if m && !mm {
				t.Fatalf("Match(%q, %q) but not mounted on %q", filter, topic, mp)
			}
			if mm && !m && topic != "" && topic[0] != '$' {
				t.Fatalf("Match(%q, %q) mounted on %q, but not unmounted", filter, topic, mp)
			}
		}

		got := ExpandMountpoint(mp, clientID, username)
		if want := expandRef(mp, clientID, username); got != want {
			t.Fatalf("ExpandMountpoint(%q, %q, %q) = %q, want %q", mp, clientID, username, got, want)
		}
	})
}

// levelPrefix reports whether mp is whole literal levels: empty, or ending
// in "/" with no wildcard, and not a shared subscription prefix.
func levelPrefix(mp string) bool {
	return mp == "" || strings.HasSuffix(mp, "/") && !strings.ContainsAny(mp, "+#") &&
		!strings.HasPrefix(mp, "$share/") && mp != "$share/"
}

// expandRef is ExpandMountpoint written as the loop it means.
func expandRef(mp, clientID, username string) string {
	var b strings.Builder
	for i := 0; i < len(mp); {
		switch {
		case clientID != "" && strings.HasPrefix(mp[i:], "${clientid}"):
			b.WriteString(clientID)
			i += len("${clientid}")
		case username != "" && strings.HasPrefix(mp[i:], "${username}"):
			b.WriteString(username)
			i += len("${username}")
		default:
			b.WriteByte(mp[i])
			i++
		}
	}
	return b.String()
}
