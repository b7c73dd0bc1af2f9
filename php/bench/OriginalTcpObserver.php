<?php

declare(strict_types=1);

/**
 * The original tool's logging class, as it behaves (FACTS: one TCP socket to
 * the aggregator, one blocking socket_write of json_encode([$protocol,
 * $direction, $message]) . "\n" per call; while not connected it tries to
 * connect at most once a second and otherwise returns at once; a failed
 * write drops the socket). Written here from that description, for
 * observer-cost.php to measure beside ours the same way; not part of the
 * library.
 */
final class OriginalTcpObserver
{
    public static string $address = '127.0.0.1';
    public static int $port = 6666;

    private static ?Socket $socket = null;
    private static bool $connected = false;
    private static int $triedAt = 0;

    public static function log(string $protocol, string $direction, string $message): void
    {
        if (!self::connected()) {
            return;
        }
        $line = json_encode([$protocol, $direction, $message]) . "\n";
        if (@socket_write(self::$socket, $line, strlen($line)) === false) {
            self::$socket = null;
            self::$connected = false;
        }
    }

    /** Forgets the connection, for the benchmark to move the class to another receiver. */
    public static function reset(): void
    {
        self::$socket = null;
        self::$connected = false;
        self::$triedAt = 0;
    }

    private static function connected(): bool
    {
        if (self::$connected) {
            return true;
        }
        $second = time();
        if (self::$triedAt === $second) {
            return false;
        }
        self::$triedAt = $second;
        self::$socket ??= socket_create(AF_INET, SOCK_STREAM, SOL_TCP) ?: null;
        if (self::$socket === null) {
            return false;
        }
        self::$connected = @socket_connect(self::$socket, self::$address, self::$port);
        if (!self::$connected) {
            self::$socket = null; // a failed connect leaves the socket unusable
        }
        return self::$connected;
    }
}
