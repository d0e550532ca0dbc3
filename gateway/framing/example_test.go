package framing_test

import (
	"errors"
	"fmt"

	"github.com/protogate/protogate/gateway/framing"
)

func Example() {
	c := framing.Config{Kind: framing.Length, LengthBytes: 2, BigEndian: true, MaxFrame: 16}
	d, err := framing.NewDecoder(c)
	if err != nil {
		fmt.Println(err)
		return
	}
	var wire []byte
	wire = framing.Append(wire, c, []byte("hello"))
	wire = framing.Append(wire, c, []byte("world"))

	// Socket reads split the stream anywhere; frames come out whole.
	for _, read := range [][]byte{wire[:3], wire[3:9], wire[9:]} {
		d.Feed(read)
		for {
			frame, ok, err := d.Next()
			if err != nil {
				fmt.Println(err)
				return
			}
			if !ok {
				break
			}
			fmt.Printf("%q\n", frame)
		}
	}

	// A prefix declaring more than MaxFrame fails at once.
	d.Feed([]byte{0x01, 0x00})
	_, _, err = d.Next()
	fmt.Println(errors.Is(err, framing.ErrFrameTooLarge), err)

	// Line framing trims "\r\n" and yields empty lines as empty frames.
	lines, _ := framing.NewDecoder(framing.Config{Kind: framing.Line, MaxFrame: 80})
	lines.Feed([]byte("AT+CSQ\r\n\r\nOK"))
	for {
		frame, ok, _ := lines.Next()
		if !ok {
			break
		}
		fmt.Printf("%q\n", frame)
	}
	fmt.Println(lines.Buffered(), "bytes buffered")
	// Output:
	// "hello"
	// "world"
	// true framing: frame too large: length prefix declares 256 bytes, limit 16
	// "AT+CSQ"
	// ""
	// 2 bytes buffered
}
