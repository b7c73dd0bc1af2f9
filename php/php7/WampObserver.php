<?php

declare(strict_types=1);

/**
 * WampObserver for PHP 7.0 to 7.4: the same public API and the same lines,
 * byte for byte, as ../WampObserver.php (PHP 8), in PHP 7.0 syntax. Load
 * one of the two, never both: they are the same global class.
 *
 * Sends log lines of WAMP messages to a php-wamp-observer over UDP, batched
 * with each line's hrtime(true), as the PHP 8 class documents. PHP 7.0 to
 * 7.2 have no hrtime(): there, every line is sent at once, in a datagram of
 * its own, without a time (the receiver times it on arrival), because
 * batching without the sender's time would corrupt durations.
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
    /** @var int datagrams of up to this many bytes; see the PHP 8 class */
    public static $batchBytes = 8192;
    /** @var int a batch leaves once its oldest line is this old, at the next log() (or flush()) */
    public static $flushAfterMs = 10;

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
    /** @var resource|null the fallback without the sockets extension: a connected UDP stream */
    private static $stream = null;
    /** @var string where the socket or stream is connected to */
    private static $target = '';
    /** @var string lines waiting to be sent, each with its "\n" */
    private static $batch = '';
    /** @var int */
    private static $batchLines = 0;
    /** @var int hrtime of the oldest line waiting */
    private static $batchSince = 0;
    /** @var bool false until a line has been sent at once since start, fork or outage */
    private static $anchored = false;
    /** @var int while the receiver is down: the time() before which log() does nothing */
    private static $downUntil = 0;
    /** @var bool */
    private static $atShutdown = false;

    /**
     * Sets the receiver as "host:port" ("[::1]:6666" for IPv6); "" turns
     * logging off.
     *
     * @throws InvalidArgumentException for a malformed address
     */
    public static function configure(string $addr)
    {
        self::flush(); // what waits is for the receiver it was logged for
        self::$downUntil = 0;
        self::$anchored = false;
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
        if (self::$downUntil !== 0) {
            // The receiver refused the last batch: nothing to do until
            // the retry, as cheaply as the original class skips.
            if (time() < self::$downUntil) {
                self::$dropped++;
                return;
            }
            self::$downUntil = 0;
        }
        if (!self::logging()) {
            return;
        }
        // hrtime() is PHP 7.3's; called by name so that PHP 7.0 to 7.2 parse
        // and skip it.
        $clock = 'hrtime';
        $sent = function_exists($clock) ? $clock(true) : null;
        try {
            // Escaping only lengthens the message, so a message this long
            // needs no encoding to be known too long.
            $line = strlen($message) + 1 > self::$maxDatagram ? null : json_encode(self::fields($protocol, $direction, $message, $sent), self::encoding());
            if ($line === false) {
                self::$dropped++;
                return;
            }
            $shortened = false;
            if ($line === null || strlen($line) + 1 > self::$maxDatagram) {
                $line = self::shortLine($protocol, $direction, $message, $sent);
                if ($line === null) {
                    self::$dropped++;
                    return;
                }
                $shortened = true;
            }
            if (self::$batchLines > 0 && strlen(self::$batch) + strlen($line) + 1 > self::$batchBytes) {
                self::flush();
            }
            if (self::$batchLines === 0) {
                self::$batchSince = (int) $sent;
            }
            self::$batch .= $line . "\n";
            self::$batchLines++;
            if ($shortened) {
                self::$shortened++;
            }
            if ($sent === null || !self::$anchored || $sent - self::$batchSince >= self::$flushAfterMs * 1000000 || strlen(self::$batch) >= self::$batchBytes) {
                self::flush();
            }
        } catch (\Throwable $e) {
            self::$dropped++;
        }
    }

    /**
     * Sends the lines waiting, in one datagram; see the PHP 8 class.
     */
    public static function flush()
    {
        if (self::$batchLines === 0) {
            return;
        }
        $batch = self::$batch;
        $lines = self::$batchLines;
        self::$batch = '';
        self::$batchLines = 0;
        if (!self::$atShutdown) {
            self::$atShutdown = true;
            register_shutdown_function(array(self::class, 'flush'));
        }
        // Silences everything, including a host application's own error
        // handler, which would otherwise see socket warnings.
        set_error_handler(static function () {
            return true;
        });
        try {
            $result = self::send($batch);
        } catch (\Throwable $e) {
            $result = false;
        } finally {
            restore_error_handler();
        }
        if ($result === true) {
            self::$anchored = true;
            return;
        }
        self::$dropped += $lines;
        if ($result === null) {
            self::$downUntil = time() + 1;
            self::$anchored = false;
        }
    }

    /**
     * The line's elements: with the sender's time where there is one.
     *
     * @param mixed $message
     * @param int|null $sent
     * @return array
     */
    private static function fields(string $protocol, string $direction, $message, $sent): array
    {
        return $sent === null ? array($protocol, $direction, $message) : array($protocol, $direction, $message, $sent);
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
    private static function shortLine(string $protocol, string $direction, string $message, $sent)
    {
        $head = self::head($message);
        if ($head === null) {
            return null;
        }
        $line = json_encode(self::fields($protocol, $direction, $head, $sent), self::encoding());
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

    /**
     * Sends one datagram: true when sent, false when it could not be, null
     * when refused (the receiver is down).
     *
     * @return bool|null
     */
    private static function send(string $datagram)
    {
        if (self::$ownerPid !== getmypid()) {
            // A forked child: the batch it inherited is its parent's to
            // send, and the socket too.
            $first = self::$ownerPid === 0;
            self::$ownerPid = getmypid();
            self::$socket = null;
            self::$stream = null;
            self::$target = '';
            if (!$first) {
                self::$anchored = false;
                return false;
            }
        }
        $ip = self::resolve((string) self::$address);
        if ($ip === null) {
            return false;
        }
        if (function_exists('socket_send')) {
            return self::sendWithSocket($datagram, $ip);
        }
        return self::sendWithStream($datagram, $ip);
    }

    /**
     * @return bool|null
     */
    private static function sendWithSocket(string $datagram, string $ip)
    {
        $target = $ip . ' ' . (int) self::$port;
        if (self::$socket === null || self::$target !== $target) {
            $socket = socket_create(strpos($ip, ':') !== false ? AF_INET6 : AF_INET, SOCK_DGRAM, SOL_UDP);
            // Connected, so that a receiver that is down is reported;
            // non-blocking, so that a full send buffer fails at once.
            if ($socket === false || !socket_set_nonblock($socket) || !socket_connect($socket, $ip, (int) self::$port)) {
                return false;
            }
            self::$socket = $socket;
            self::$target = $target;
        }
        if (socket_send(self::$socket, $datagram, strlen($datagram), 0) === strlen($datagram)) {
            return true;
        }
        return socket_last_error(self::$socket) === SOCKET_ECONNREFUSED ? null : false;
    }

    /**
     * @return bool|null
     */
    private static function sendWithStream(string $datagram, string $ip)
    {
        $target = 'udp://' . (strpos($ip, ':') !== false ? "[$ip]" : $ip) . ':' . (int) self::$port;
        if (self::$stream === null || self::$target !== $target) {
            $stream = stream_socket_client($target, $errno, $error);
            if ($stream === false) {
                return false;
            }
            stream_set_blocking($stream, false);
            self::$stream = $stream;
            self::$target = $target;
        }
        $written = fwrite(self::$stream, $datagram);
        if ($written === strlen($datagram)) {
            return true;
        }
        return $written === false ? null : false;
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
