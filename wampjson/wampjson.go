// Package wampjson is nexus's JSON serializer, made fast for the messages
// RPC and pub/sub traffic is made of: a Serializer that decodes CALL,
// YIELD, ERROR and PUBLISH, and encodes RESULT, INVOCATION, EVENT, ERROR
// and PUBLISHED, by hand, into exactly what nexus's JSONSerializer (ugorji
// and reflection) produces, and hands every other message, and any input
// or value it is not sure of, to nexus's serializer.
//
// Fidelity comes first: what a client receives through the router must be
// what stock nexus would send it. The decoder therefore gives up rather
// than guess wherever ugorji has a way of its own (lone surrogates, a
// repeated key, integers beyond 64 bits, long floats, what JSON does not
// allow; invalid UTF-8 too, to be safe), and the
// tests compare both serializers on the same inputs, fuzzed.
package wampjson

import (
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
)

// Serializer is a serialize.Serializer for wamp.2.json. The zero value is
// ready to use, and it is safe for concurrent use.
type Serializer struct {
	nexus serialize.JSONSerializer
}

var _ serialize.Serializer = (*Serializer)(nil)

// Serialize encodes a message as nexus's JSONSerializer does.
func (s *Serializer) Serialize(msg wamp.Message) ([]byte, error) {
	if b, ok := encodeFast(msg); ok {
		return b, nil
	}
	return s.nexus.Serialize(msg)
}

// Deserialize decodes a message as nexus's JSONSerializer does.
func (s *Serializer) Deserialize(data []byte) (wamp.Message, error) {
	if msg, ok := decodeFast(data); ok {
		return msg, nil
	}
	return s.nexus.Deserialize(data)
}

// SerializeDataItem is nexus's.
func (s *Serializer) SerializeDataItem(item any) ([]byte, error) {
	return s.nexus.SerializeDataItem(item)
}

// DeserializeDataItem is nexus's.
func (s *Serializer) DeserializeDataItem(data []byte, v any) error {
	return s.nexus.DeserializeDataItem(data, v)
}
