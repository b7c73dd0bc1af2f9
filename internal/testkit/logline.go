package testkit

import (
	"bytes"
	"encoding/json"
)

// LogLine is the line WampObserver sends for one WAMP message, without its
// newline: the JSON array [protocol, direction, message], as PHP's
// json_encode writes it with JSON_UNESCAPED_SLASHES|JSON_UNESCAPED_UNICODE.
// The original tool's writer sends ("wamp", "in", `[2,"<id>","hello1",{…}]`)
// per call and `[3,"<id>",{…}]` or `[4,"<id>",{…}]` per answer.
//
// Invalid UTF-8 in the arguments becomes U+FFFD; a test of invalid lines
// writes them by hand.
func LogLine(protocol, direction, message string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode([3]string{protocol, direction, message}) // strings always encode
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
