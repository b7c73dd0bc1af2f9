<?php

declare(strict_types=1);

namespace Wamp;

/**
 * Reads typed fields out of a decoded WAMP message, rejecting what the
 * spec does not allow there.
 */
final class Field
{
    private function __construct()
    {
    }

    /**
     * A WAMP id: an integer in [1, 2^53], so that any JSON implementation
     * carries it exactly.
     *
     * @throws ProtocolViolation
     */
    public static function id(array $message, int $index): int
    {
        $value = $message[$index] ?? null;
        if (!is_int($value) || $value < 1 || $value > 9007199254740992) {
            throw self::violation($message, $index, 'an id');
        }
        return $value;
    }

    /** @throws ProtocolViolation */
    public static function int(array $message, int $index): int
    {
        $value = $message[$index] ?? null;
        if (!is_int($value)) {
            throw self::violation($message, $index, 'an integer');
        }
        return $value;
    }

    /** @throws ProtocolViolation */
    public static function uri(array $message, int $index): string
    {
        $value = $message[$index] ?? null;
        if (!is_string($value)) {
            throw self::violation($message, $index, 'a URI');
        }
        return $value;
    }

    /**
     * A dict, decoded as a PHP array ({} arrives as []).
     *
     * @return array<string, mixed>
     * @throws ProtocolViolation
     */
    public static function dict(array $message, int $index): array
    {
        $value = $message[$index] ?? null;
        if (!is_array($value) || ($value !== [] && array_is_list($value))) {
            throw self::violation($message, $index, 'a dict');
        }
        return $value;
    }

    /**
     * The optional Arguments|list; absent means none.
     *
     * @return list<mixed>
     * @throws ProtocolViolation
     */
    public static function args(array $message, int $index): array
    {
        $value = $message[$index] ?? [];
        if (!is_array($value) || !array_is_list($value)) {
            throw self::violation($message, $index, 'a list');
        }
        return $value;
    }

    /**
     * The optional ArgumentsKw|dict; absent means none.
     *
     * @return array<string, mixed>
     * @throws ProtocolViolation
     */
    public static function kwargs(array $message, int $index): array
    {
        return array_key_exists($index, $message) ? self::dict($message, $index) : [];
    }

    private static function violation(array $message, int $index, string $expected): ProtocolViolation
    {
        return new ProtocolViolation("field $index of message {$message[0]} is not $expected");
    }
}
