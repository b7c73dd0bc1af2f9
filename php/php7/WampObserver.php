<?php

declare(strict_types=1);

/**
 * WampObserver for PHP 7.0 to 7.4: the same public API and the same lines,
 * byte for byte, as ../WampObserver.php (PHP 8), in PHP 7.0 syntax. Load
 * one of the two, never both: they are the same global class.
 *
 * Sends one log line per WAMP message to a php-wamp-observer over UDP.
 * Each line is one datagram: json_encode([$protocol, $direction, $message])
 * and "\n". Logging must never hurt the application that logs: nothing here
 * blocks, throws or raises a PHP error, whatever the receiver does; a line
 * that cannot be sent is dropped and counted in $dropped.
 *
 * A line too long for one datagram (a call with a big payload) is cut down
 * to the head of its message, before Arguments and ArgumentsKw (see head()),
 * sent, and counted in $shortened.
 *
 * All lines of a process leave from one socket, hence one source port: the
 * receiver tells processes apart by their address, so a call logged by a
 * process must be answered from the same address.
 *
 * Differences from the PHP 8 class, all forced by PHP 7.0: the properties
 * and return types are not declared (PHP 7.0 has neither typed properties
 * nor void), the tables below are private static arrays rather than private
 * constants, and on PHP 7.0 only (serialize_precision 17) a float in the
 * head of a shortened message is written with 17 significant digits, which
 * the receiver reads as the same number.
 */
final class WampObserver
{
    /** @var string receiver host or IP; names are resolved once per process (see resolve()) */
    public static $address = '127.0.0.1';
    /** @var int */
    public static $port = 6666;
    /** @var int lines not sent: receiver unresolvable, line too large even shortened, socket full or failing */
    public static $dropped = 0;
    /** @var int lines too large for a datagram that were sent with the message cut down to its head */
    public static $shortened = 0;

    /** Stays under the 65507-byte UDP payload limit with room to spare. */
    private static $maxDatagram = 65000;
    /**
     * How many leading elements make the head of a message, by type code:
     * everything before Arguments|list. Codes 2..4 are WAMP v1 CALL,
     * CALLRESULT and CALLERROR only when a string call id follows (in v2
     * they are WELCOME, ABORT and CHALLENGE, which are not cut).
     */
    private static $headLength = array(
        48 => 4, // CALL [48, Request, Options, Procedure]
        50 => 3, // RESULT [50, CALL.Request, Details]
        8 => 5, // ERROR [8, REQUEST.Type, REQUEST.Request, Details, Error]
        68 => 4, // INVOCATION [68, Request, REGISTERED.Registration, Details]
        70 => 3, // YIELD [70, INVOCATION.Request, Options]
    );
    private static $v1HeadLength = array(
        2 => 3, // v1 CALL [2, callID, procURI]
        3 => 2, // v1 CALLRESULT [3, callID]
        4 => 3, // v1 CALLERROR [4, callID, errorURI]
    );

    /** @var bool|null null until configured, explicitly or from the environment on first use */
    private static $enabled = null;
    /** @var array<string, string|false> host => IP, or false if it did not resolve */
    private static $resolved = array();
    /** @var int the process that opened the socket: a forked child must open its own */
    private static $ownerPid = 0;
    /** @var resource|object|null a socket: a resource on PHP 7, a Socket on PHP 8 */
    private static $socket = null;
    /** @var int */
    private static $socketFamily = 0;
    /** @var resource|null the fallback without the sockets extension: a connected UDP stream */
    private static $stream = null;
    /** @var string */
    private static $streamTarget = '';

    /**
     * Sets the receiver as "host:port" ("[::1]:6666" for IPv6); "" turns
     * logging off.
     *
     * @throws InvalidArgumentException for a malformed address
     */
    public static function configure(string $addr)
    {
        if ($addr === '') {
            self::$enabled = false;
            return;
        }
        list(self::$address, self::$port) = self::parseAddress($addr);
        self::$enabled = true;
    }

    public static function logging(): bool
    {
        if (self::$enabled === null) {
            self::configureFromEnvironment();
        }
        return self::$enabled;
    }

    public static function log(string $protocol, string $direction, string $message)
    {
        if (!self::logging()) {
            return;
        }
        // Silences everything, including a host application's own error
        // handler, which would otherwise see socket warnings.
        set_error_handler(static function () {
            return true;
        });
        try {
            // Escaping only lengthens the message, so a message this long
            // needs no encoding to be known too long.
            $line = strlen($message) + 1 > self::$maxDatagram ? null : json_encode(array($protocol, $direction, $message), self::encoding());
            if ($line === false) {
                self::$dropped++;
                return;
            }
            $shortened = false;
            if ($line === null || strlen($line) + 1 > self::$maxDatagram) {
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
        } catch (\Throwable $e) {
            self::$dropped++;
        } finally {
            restore_error_handler();
        }
    }

    private static function encoding(): int
    {
        return JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
    }

    /**
     * The line for an oversized message: its head, if that fits in a
     * datagram; null if the message has no head to keep (not a WAMP
     * message, or a type without a payload to cut) or the head is too long.
     *
     * @return string|null
     */
    private static function shortLine(string $protocol, string $direction, string $message)
    {
        $head = self::head($message);
        if ($head === null) {
            return null;
        }
        $line = json_encode(array($protocol, $direction, $head), self::encoding());
        return $line === false || strlen($line) + 1 > self::$maxDatagram ? null : $line;
    }

    /**
     * The message without its payload, as JSON: the elements before
     * Arguments|list, decoded with dicts as objects so that {} stays {},
     * and encoded with the line's flags (plus 1.0 kept as 1.0). Null unless
     * the message is a list with a type code that has a head, or when its
     * head is the whole message (nothing to cut).
     *
     * @return string|null
     */
    private static function head(string $message)
    {
        $decoded = json_decode($message, false);
        if (!is_array($decoded) || !is_int(isset($decoded[0]) ? $decoded[0] : null)) {
            return null;
        }
        $code = $decoded[0];
        $keep = null;
        if (isset(self::$headLength[$code])) {
            $keep = self::$headLength[$code];
        } elseif (isset($decoded[1]) && is_string($decoded[1]) && isset(self::$v1HeadLength[$code])) {
            $keep = self::$v1HeadLength[$code];
        }
        if ($keep === null || count($decoded) <= $keep) {
            return null;
        }
        $head = json_encode(array_slice($decoded, 0, $keep), self::encoding() | JSON_PRESERVE_ZERO_FRACTION);
        return $head === false ? null : $head;
    }

    /**
     * Applies WAMP_OBSERVER_ADDR if set. Unset, the properties (which a
     * host may have assigned directly) stay as they are. A malformed value
     * turns logging off: this runs inside log(), which must not throw.
     */
    private static function configureFromEnvironment()
    {
        $addr = getenv('WAMP_OBSERVER_ADDR');
        if ($addr === false) {
            self::$enabled = true;
            return;
        }
        try {
            self::configure($addr);
        } catch (InvalidArgumentException $e) {
            self::$enabled = false;
        }
    }

    /** @return array{0: string, 1: int} */
    private static function parseAddress(string $addr): array
    {
        $colon = strrpos($addr, ':');
        if ($colon === false) {
            throw new InvalidArgumentException("observer address \"$addr\" is not host:port");
        }
        $host = (string) substr($addr, 0, $colon);
        $port = (string) substr($addr, $colon + 1);
        // substr() gives false, not "", for an empty result on PHP 7.
        if (substr($host, 0, 1) === '[' && substr($host, -1) === ']') {
            $host = (string) substr($host, 1, -1);
        }
        if ($host === '' || preg_match('/^\d{1,5}$/', $port) !== 1 || (int) $port < 1 || (int) $port > 65535) {
            throw new InvalidArgumentException("observer address \"$addr\" is not host:port");
        }
        return array($host, (int) $port);
    }

    private static function send(string $datagram): bool
    {
        $ip = self::resolve((string) self::$address);
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
        $family = strpos($ip, ':') !== false ? AF_INET6 : AF_INET;
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
        return socket_sendto(self::$socket, $datagram, strlen($datagram), 0, $ip, (int) self::$port) === strlen($datagram);
    }

    private static function sendWithStream(string $datagram, string $ip): bool
    {
        $target = 'udp://' . (strpos($ip, ':') !== false ? "[$ip]" : $ip) . ':' . (int) self::$port;
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
     *
     * @return string|null
     */
    private static function resolve(string $host)
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
