package topic

import "testing"

func TestMount(t *testing.T) {
	for _, v := range []struct{ mp, topic, want string }{
		{"", "a/b", "a/b"},
		{"t1/", "a/b", "t1/a/b"},
		{"t1/", "/a", "t1//a"},
		{"t1", "a", "t1a"},
		{"t1/", "#", "t1/#"},
		{"t1/", "$share/g/a/#", "$share/g/t1/a/#"},
		{"t1/", "$share/g/", "$share/g/t1/"},
		{"t1/", "$share/g", "$share/g"},
		{"t1/", "$share", "t1/$share"},
		{"t1/", "$SYS/x", "t1/$SYS/x"},
	} {
		if got := Mount(v.mp, v.topic); got != v.want {
			t.Errorf("Mount(%q, %q) = %q, want %q", v.mp, v.topic, got, v.want)
		}
	}
}

func TestUnmount(t *testing.T) {
	for _, v := range []struct {
		mp, topic, want string
		ok              bool
	}{
		{"", "a/b", "a/b", true},
		{"t1/", "t1/a/b", "a/b", true},
		{"t1/", "t1/", "", true},
		{"t1/", "t2/a", "t2/a", false},
		{"t1/", "t1", "t1", false},
		{"t1/", "", "", false},
	} {
		got, ok := Unmount(v.mp, v.topic)
		if got != v.want || ok != v.ok {
			t.Errorf("Unmount(%q, %q) = %q, %v; want %q, %v", v.mp, v.topic, got, ok, v.want, v.ok)
		}
	}
	for _, topic := range []string{"a", "a/b", "/", "x/#"} {
		if got, ok := Unmount("m/", Mount("m/", topic)); !ok || got != topic {
			t.Errorf("Unmount(Mount(%q)) = %q, %v", topic, got, ok)
		}
	}
}

func TestExpandMountpoint(t *testing.T) {
	for _, v := range []struct{ mp, cid, user, want string }{
		{"", "c1", "u1", ""},
		{"gw/", "c1", "u1", "gw/"},
		{"${clientid}/", "c1", "u1", "c1/"},
		{"t/${username}/${clientid}/", "c1", "u1", "t/u1/c1/"},
		{"${clientid}${clientid}", "c1", "", "c1c1"},
		{"t/${username}/", "c1", "", "t/${username}/"},
		{"t/${clientid}/", "", "u1", "t/${clientid}/"},
		{"t/${endpoint_name}/${clientid}/", "c1", "u1", "t/${endpoint_name}/c1/"},
		{"t/${ClientID}/", "c1", "u1", "t/${ClientID}/"},
		{"t/${clientid", "c1", "u1", "t/${clientid"},
		// Values are not expanded again.
		{"${clientid}/${username}/", "${username}", "u1", "${username}/u1/"},
	} {
		if got := ExpandMountpoint(v.mp, v.cid, v.user); got != v.want {
			t.Errorf("ExpandMountpoint(%q, %q, %q) = %q, want %q", v.mp, v.cid, v.user, got, v.want)
		}
	}
}
