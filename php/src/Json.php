<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The wamp.2.json serialization of messages.
 *
 * Messages are built as PHP arrays whose dict positions hold objects
 * (stdClass or an array cast to object), so an empty dict is written as {}
 * and never as the [] an empty PHP array becomes.
 *
 * Received messages are decoded the same way round: a JSON object becomes
 * a stdClass and a JSON array a PHP list, at every depth, so the two stay
 * distinguishable ({"0":"zero"} is a dict, [] is not an empty dict) and a
 * decoded message encodes back to the same JSON. plain() then turns what
 * is handed to user code into plain PHP arrays.
 */
final class Json
{
    private const ENCODE = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR;

    private function __construct()
    {
    }

    /** @throws \JsonException when the message holds something JSON cannot carry (invalid UTF-8, NAN, ...) */
    public static function encode(array $message): string
    {
        return json_encode($message, self::ENCODE);
    }

    /**
     * Decodes a message with dicts as stdClass objects and lists as PHP
     * lists.
     *
     * One limit of PHP objects: a key starting with "\u0000" cannot be a
     * property name, so a message holding one anywhere is not decoded.
     *
     * @return list<mixed>
     * @throws ProtocolViolation unless it is a JSON array starting with an integer message code
     */
    public static function decode(string $text): array
    {
        try {
            $message = json_decode($text, false, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolViolation('message is not JSON: ' . $e->getMessage());
        }
        // Only a JSON array decodes to a PHP array (always a list) now.
        if (!is_array($message) || !is_int($message[0] ?? null)) {
            throw new ProtocolViolation('message is not a list starting with a message code');
        }
        return $message;
    }

    /**
     * A decoded value with every dict (stdClass), at any depth, turned into
     * a PHP array, as json_decode($text, true) would have given it. Keys
     * that look like integers become integer keys, so a nested {} and [],
     * or {"0":"a"} and ["a"], are no longer told apart: use it where the
     * position already says dict or list, or where that does not matter.
     */
    public static function plain(mixed $value): mixed
    {
        if ($value instanceof \stdClass) {
            $value = get_object_vars($value);
        } elseif (!is_array($value)) {
            return $value;
        }
        foreach ($value as $key => $item) {
            if (is_array($item) || $item instanceof \stdClass) {
                $value[$key] = self::plain($item);
            }
        }
        return $value;
    }
}
