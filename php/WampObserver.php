<?php

declare(strict_types=1);

/**
 * Sends one log line per WAMP message to a php-wamp-observer over UDP.
 *
 * Each line is one datagram: json_encode([$protocol, $direction, $message])
 * and "\n". Logging must never hurt the application that logs: nothing here
 * blocks, throws or raises a PHP error, whatever the receiver does; a line
 * that cannot be sent is dropped and counted in $dropped.
 *
 * A line too long for one datagram (a call with a big payload) is not
 * simply dropped: the receiver reads only the head of a message, before
 * its Arguments and ArgumentsKw, so the message is cut down to that head
 * (see head()) and the shortened line is sent and counted in $shortened.
 *
 * All lines of a process leave from one socket, hence one source port: the
 * receiver tells processes apart by their address, so a call logged by a
 * process must be answered from the same address.
 */
final class WampObserver
{
    /** Receiver host or IP; names are resolved once per process (see resolve()). */
    public static string $address = '127.0.0.1';
    public static int $port = 6666;
    /** Lines not sent: receiver unresolvable, line too large even shortened, socket full or failing. */
    public static int $dropped = 0;
    /** Lines too large for a datagram that were sent with the message cut down to its head. */
    public static int $shortened = 0;

    private const ENV = 'WAMP_OBSERVER_ADDR';
    private const ENCODING = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
    /** Stays under the 65507-byte UDP payload limit with room to spare. */
    private const MAX_DATAGRAM = 65000;
    /**
     * How many leading elements make the head of a message, by type code:
     * everything before Arguments|list. Codes 2..4 are WAMP v1 CALL,
     * CALLRESULT and CALLERROR only when a string call id follows (in v2
     * they are WELCOME, ABORT and CHALLENGE, which are not cut).
     */
    private const HEAD_LENGTH = [
        48 => 4, // CALL [48, Request, Options, Procedure]
        50 => 3, // RESULT [50, CALL.Request, Details]
        8 => 5, // ERROR [8, REQUEST.Type, REQUEST.Request, Details, Error]
        68 => 4, // INVOCATION [68, Request, REGISTERED.Registration, Details]
        70 => 3, // YIELD [70, INVOCATION.Request, Options]
    ];
    private const V1_HEAD_LENGTH = [
        2 => 3, // v1 CALL [2, callID, procURI]
        3 => 2, // v1 CALLRESULT [3, callID]
        4 => 3, // v1 CALLERROR [4, callID, errorURI]
    ];

    /** null until configured, explicitly or from the environment on first use. */
    private static ?bool $enabled = null;
    /** @var array<string, string|false> host => IP, or false if it did not resolve */
    private static array $resolved = [];
    /** The process that opened the socket: a forked child must open its own. */
    private static int $ownerPid = 0;
    private static ?Socket $socket = null;
    private static int $socketFamily = 0;
    /** @var resource|null the fallback without the sockets extension: a connected UDP stream */
    private static $stream = null;
    private static string $streamTarget = '';

    /**
     * Sets the receiver as "host:port" ("[::1]:6666" for IPv6); "" turns
     * logging off.
     *
     * @throws InvalidArgumentException for a malformed address
     */
    public static function configure(string $addr): void
    {
        if ($addr === '') {
            self::$enabled = false;
            return;
        }
        [self::$address, self::$port] = self::parseAddress($addr);
        self::$enabled = true;
    }

    public static function logging(): bool
    {
        if (self::$enabled === null) {
            self::configureFromEnvironment();
        }
        return self::$enabled;
    }

    public static function log(string $protocol, string $direction, string $message): void
    {
        if (!self::logging()) {
            return;
        }
        // Silences everything, including a host application's own error
        // handler, which would otherwise see socket warnings.
        set_error_handler(static fn (): bool => true);
        try {
            // Escaping only lengthens the message, so a message this long
            // needs no encoding to be known too long.
            $line = strlen($message) + 1 > self::MAX_DATAGRAM ? null : json_encode([$protocol, $direction, $message], self::ENCODING);
            if ($line === false) {
                self::$dropped++;
                return;
            }
            $shortened = false;
            if ($line === null || strlen($line) + 1 > self::MAX_DATAGRAM) {
                $line = self::shortLine($protocol, $direction, $message);
                if ($line === null) {
                    self::$dropped++;
                    return;
                }
                $shortened = true;
            }
            if (!self::send($line . "\n")) {
                self::$dropped++;
            } elseif ($shortened) {
                self::$shortened++;
            }
        } catch (Throwable) {
            self::$dropped++;
        } finally {
            restore_error_handler();
        }
    }

    /**
     * The line for an oversized message: its head, if that fits in a
     * datagram; null if the message has no head to keep (not a WAMP
     * message, or a type without a payload to cut) or the head is too long.
     */
    private static function shortLine(string $protocol, string $direction, string $message): ?string
    {
        $head = self::head($message);
        if ($head === null) {
            return null;
        }
        $line = json_encode([$protocol, $direction, $head], self::ENCODING);
        return $line === false || strlen($line) + 1 > self::MAX_DATAGRAM ? null : $line;
    }

    /**
     * The message without its payload, as JSON: the elements before
     * Arguments|list (HEAD_LENGTH), decoded with dicts as objects so that
     * {} stays {}, and encoded with the line's flags (plus 1.0 kept as 1.0).
     * Null unless the message is a list with a type code that has a head,
     * or when its head is the whole message (nothing to cut).
     */
    private static function head(string $message): ?string
    {
        $decoded = json_decode($message, false);
        if (!is_array($decoded) || !is_int($decoded[0] ?? null)) {
            return null;
        }
        $code = $decoded[0];
        $keep = self::HEAD_LENGTH[$code] ?? (is_string($decoded[1] ?? null) ? self::V1_HEAD_LENGTH[$code] ?? null : null);
        if ($keep === null || count($decoded) <= $keep) {
            return null;
        }
        $head = json_encode(array_slice($decoded, 0, $keep), self::ENCODING | JSON_PRESERVE_ZERO_FRACTION);
        return $head === false ? null : $head;
    }

    /**
     * Applies WAMP_OBSERVER_ADDR if set. Unset, the properties (which a
     * host may have assigned directly) stay as they are. A malformed value
     * turns logging off: this runs inside log(), which must not throw.
     */
    private static function configureFromEnvironment(): void
    {
        $addr = getenv(self::ENV);
        if ($addr === false) {
            self::$enabled = true;
            return;
        }
        try {
            self::configure($addr);
        } catch (InvalidArgumentException) {
            self::$enabled = false;
        }
    }

    /** @return array{string, int} */
    private static function parseAddress(string $addr): array
    {
        $colon = strrpos($addr, ':');
        if ($colon === false) {
            throw new InvalidArgumentException("observer address \"$addr\" is not host:port");
        }
        $host = substr($addr, 0, $colon);
        $port = substr($addr, $colon + 1);
        if (str_starts_with($host, '[') && str_ends_with($host, ']')) {
            $host = substr($host, 1, -1);
        }
        if ($host === '' || preg_match('/^\d{1,5}$/', $port) !== 1 || (int) $port < 1 || (int) $port > 65535) {
            throw new InvalidArgumentException("observer address \"$addr\" is not host:port");
        }
        return [$host, (int) $port];
    }

    private static function send(string $datagram): bool
    {
        $ip = self::resolve(self::$address);
        if ($ip === null) {
            return false;
        }
        if (self::$ownerPid !== getmypid()) {
            self::$socket = null;
            self::$stream = null;
            self::$ownerPid = getmypid();
        }
        if (function_exists('socket_sendto')) {
            return self::sendWithSocket($datagram, $ip);
        }
        return self::sendWithStream($datagram, $ip);
    }

    private static function sendWithSocket(string $datagram, string $ip): bool
    {
        $family = str_contains($ip, ':') ? AF_INET6 : AF_INET;
        if (self::$socket === null || self::$socketFamily !== $family) {
            $socket = socket_create($family, SOCK_DGRAM, SOL_UDP);
            if ($socket === false || !socket_set_nonblock($socket)) {
                return false;
            }
            self::$socket = $socket;
            self::$socketFamily = $family;
        }
        // Unconnected, so the receiver may move (or be down) without the
        // socket collecting errors; a full send buffer fails at once
        // (non-blocking) instead of waiting.
        return socket_sendto(self::$socket, $datagram, strlen($datagram), 0, $ip, self::$port) === strlen($datagram);
    }

    private static function sendWithStream(string $datagram, string $ip): bool
    {
        $target = 'udp://' . (str_contains($ip, ':') ? "[$ip]" : $ip) . ':' . self::$port;
        if (self::$stream === null || self::$streamTarget !== $target) {
            $stream = stream_socket_client($target, $errno, $error);
            if ($stream === false) {
                return false;
            }
            stream_set_blocking($stream, false);
            self::$stream = $stream;
            self::$streamTarget = $target;
        }
        return fwrite(self::$stream, $datagram) === strlen($datagram);
    }

    /**
     * The IP to send to. A name is resolved once per process, success or
     * failure, because resolving blocks and log() must not; use an IP
     * address where the receiver may move.
     */
    private static function resolve(string $host): ?string
    {
        if (filter_var($host, FILTER_VALIDATE_IP) !== false) {
            return $host;
        }
        if (!array_key_exists($host, self::$resolved)) {
            $ips = gethostbynamel($host);
            self::$resolved[$host] = $ips === false ? false : $ips[0];
        }
        return self::$resolved[$host] === false ? null : self::$resolved[$host];
    }
}
