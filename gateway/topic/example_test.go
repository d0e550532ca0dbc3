package topic_test

import (
	"errors"
	"fmt"

	"github.com/protogate/protogate/gateway/topic"
)

func Example() {
	mp := topic.ExpandMountpoint("tenant/${username}/", "dev-42", "acme")

	subject, err := topic.PublishSubject(topic.Mount(mp, "sensors/spBv1.0/temp"))
	fmt.Println(subject, err)

	f, err := topic.ParseFilter(topic.Mount(mp, "$share/workers/sensors/#"))
	fmt.Println(f.Subjects, f.Queue, f.Topic, err)

	delivered := topic.TopicOf("tenant.acme.sensors.spBv1//0.temp")
	fmt.Println(topic.Match(f.Topic, delivered))
	fmt.Println(topic.Unmount(mp, delivered))

	_, err = topic.PublishSubject("$JS/API/STREAM/DELETE/x")
	fmt.Println(errors.Is(err, topic.ErrReserved))
	_, err = topic.PublishSubject("sensors/+/temp")
	fmt.Println(errors.Is(err, topic.ErrWildcard))
	// Output:
	// tenant.acme.sensors.spBv1//0.temp <nil>
	// [tenant.acme.sensors.> tenant.acme.sensors] workers tenant/acme/sensors/# <nil>
	// true
	// sensors/spBv1.0/temp true
	// true
	// true
}
