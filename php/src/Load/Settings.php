<?php

declare(strict_types=1);

namespace Wamp\Load;

/**
 * The environment the load tools read.
 */
final class Settings
{
    private function __construct(
        public string $url,
        public string $realm,
        /** "host:port" of the UDP log receiver; "" turns logging off. */
        public string $observerAddress,
        /** Stop after this many calls (writers only); null runs until a signal. */
        public ?int $callLimit,
        /** The writers' CALL timeout option, in milliseconds. */
        public int $callTimeoutMs = CallWriter::CALL_TIMEOUT_MS,
    ) {
    }

    /** @throws \InvalidArgumentException for a malformed WRITER_CALLS or WRITER_CALL_TIMEOUT_MS */
    public static function fromEnvironment(): self
    {
        $calls = self::positiveInt('WRITER_CALLS');
        $timeout = self::positiveInt('WRITER_CALL_TIMEOUT_MS') ?? CallWriter::CALL_TIMEOUT_MS;
        $observer = getenv('WAMP_OBSERVER_ADDR');
        return new self(
            self::nonEmpty('WAMP_URL', 'ws://127.0.0.1:9090/'),
            self::nonEmpty('WAMP_REALM', 'realm1'),
            // Set but empty means "no logging", unlike the other settings.
            $observer === false ? '127.0.0.1:6666' : $observer,
            $calls,
            $timeout,
        );
    }

    /** @throws \InvalidArgumentException when $name is set to anything but a positive integer */
    private static function positiveInt(string $name): ?int
    {
        $value = self::nonEmpty($name, '');
        if ($value === '') {
            return null;
        }
        $n = filter_var($value, FILTER_VALIDATE_INT, ['options' => ['min_range' => 1]]);
        if ($n === false) {
            throw new \InvalidArgumentException("$name must be a positive integer, not \"$value\"");
        }
        return $n;
    }

    private static function nonEmpty(string $name, string $default): string
    {
        $value = getenv($name);
        return $value === false || $value === '' ? $default : $value;
    }
}
