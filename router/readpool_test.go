package router

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/gammazero/nexus/v3/wamp"
)

// The pooled read buffers are reused as soon as a message is decoded, so
// nothing decoded may point into them: overwriting the buffer after
// decoding leaves every message, in every serializer, as it was.
func TestDecodedMessagesDoNotShareTheReadBuffer(t *testing.T) {
	call := &wamp.Call{Request: 7, Options: wamp.Dict{"timeout": 300, "disclose_me": true}, Procedure: "com.example.hello",
		Arguments:   wamp.List{"hello world", []byte{1, 2, 3, 4}, wamp.Dict{"nested": "value"}, 42},
		ArgumentsKw: wamp.Dict{"key": "kw value", "bin": []byte("raw bytes")}}
	for _, p := range subprotocols {
		t.Run(p.name, func(t *testing.T) {
			b, err := p.serializer.Serialize(call)
			if err != nil {
				t.Fatal(err)
			}
			want, err := p.serializer.Deserialize(bytes.Clone(b))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.serializer.Deserialize(b)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] = 0xff
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded message changed with its buffer:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}
