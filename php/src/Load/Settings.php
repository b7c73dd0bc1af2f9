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
    ) {
    }

    /** @throws \InvalidArgumentException for a malformed WRITER_CALLS */
    public static function fromEnvironment(): self
    {
        $limit = self::nonEmpty('WRITER_CALLS', '');
        $calls = null;
        if ($limit !== '') {
            $calls = filter_var($limit, FILTER_VALIDATE_INT, ['options' => ['min_range' => 1]]);
            if ($calls === false) {
                throw new \InvalidArgumentException("WRITER_CALLS must be a positive integer, not \"$limit\"");
            }
        }
        $observer = getenv('WAMP_OBSERVER_ADDR');
        return new self(
            self::nonEmpty('WAMP_URL', 'ws://127.0.0.1:9090/'),
            self::nonEmpty('WAMP_REALM', 'realm1'),
            // Set but empty means "no logging", unlike the other settings.
            $observer === false ? '127.0.0.1:6666' : $observer,
            $calls,
        );
    }

    private static function nonEmpty(string $name, string $default): string
    {
        $value = getenv($name);
        return $value === false || $value === '' ? $default : $value;
    }
}
