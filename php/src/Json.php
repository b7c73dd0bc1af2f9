<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The wamp.2.json serialization of messages.
 *
 * Messages are built as PHP arrays whose dict positions hold objects
 * (stdClass or an array cast to object), so an empty dict is written as {}
 * and never as the [] an empty PHP array becomes.
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
     * Decodes a message with dicts as PHP arrays.
     *
     * @return list<mixed>
     * @throws ProtocolViolation unless it is a JSON array starting with an integer message code
     */
    public static function decode(string $text): array
    {
        try {
            $message = json_decode($text, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolViolation('message is not JSON: ' . $e->getMessage());
        }
        // {"0": 48} also decodes to a PHP list, hence the look at the text.
        $isArray = is_array($message) && ltrim($text, " \t\n\r")[0] === '[';
        if (!$isArray || !array_is_list($message) || !is_int($message[0] ?? null)) {
            throw new ProtocolViolation('message is not a list starting with a message code');
        }
        return $message;
    }
}
