<?php

declare(strict_types=1);

namespace Wamp;

/**
 * Reads typed fields out of a message as Json::decode returns it (dicts as
 * stdClass, lists as PHP lists), rejecting what the spec does not allow
 * there. Types are checked on that wire-level form, where a JSON object
 * and a JSON array differ; dicts and lists are returned as plain PHP
 * arrays (Json::plain), at every depth.
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
     * A dict: a JSON object, whatever its keys ({"0":"zero"} included); a
     * JSON array, even [], is not one. Returned as a PHP array, in which
     * keys that look like integers are integer keys ({"0":"zero"} gives
     * [0 => 'zero']).
     *
     * @return array<array-key, mixed>
     * @throws ProtocolViolation
     */
    public static function dict(array $message, int $index): array
    {
        $value = $message[$index] ?? null;
        if (!$value instanceof \stdClass) {
            throw self::violation($message, $index, 'a dict');
        }
        return Json::plain($value);
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
        if (!is_array($value) || !self::isList($value)) {
            throw self::violation($message, $index, 'a list');
        }
        return Json::plain($value);
    }

    /**
     * The optional ArgumentsKw|dict; absent means none.
     *
     * @return array<array-key, mixed>
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

    /**
     * Whether $value's keys are 0, 1, 2, … in order: array_is_list(),
     * which PHP 8.0 lacks.
     *
     * @param array<mixed> $value
     */
    private static function isList(array $value): bool
    {
        $next = 0;
        foreach ($value as $key => $_) {
            if ($key !== $next++) {
                return false;
            }
        }
        return true;
    }
}
