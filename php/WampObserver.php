<?php

declare(strict_types=1);

/**
 * Sends log lines of WAMP messages to a php-wamp-observer over UDP.
 *
 * A line is json_encode([$protocol, $direction, $message, $sent]) and
 * "\n", where $sent is hrtime(true): this process's monotonic clock in
 * nanoseconds when log() was called. Lines are batched, several to a
 * datagram, because a datagram per line (a system call, 1.5-2 us here) would
 * cost more than the original TCP class; the receiver times each line by
 * $sent, not by its arrival, so batching delays no measurement. A batch
 * leaves when it would pass $batchBytes, when its oldest line is
 * $flushAfterMs old (checked on each log()), on flush(), and at shutdown;
 * the first line after start, a fork or an outage leaves at once, so the
 * receiver learns the clock offset from a line that did not wait. An
 * event-loop application idle for a while should call flush() from a timer.
 *
 * Logging must never hurt the application that logs: nothing here blocks,
 * throws or raises a PHP error, whatever the receiver does; lines that
 * cannot be sent are dropped and counted in $dropped. The socket is
 * connected, so a receiver that is down shows up as a refused send (the
 * kernel's ICMP answer); log() then returns at once, formatting nothing,
 * and tries again a second later, as the original class does.
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
    /**
     * Lines are sent in datagrams of up to this many bytes (a longer line
     * alone, up to 65000). 8 KiB suits a receiver on the same host; across
     * a network, 1472 keeps datagrams within one Ethernet frame. 0 sends
     * every line at once, in a datagram of its own.
     */
    public static int $batchBytes = 8192;
    /** A batch leaves once its oldest line is this old, at the next log() (or flush()). */
    public static int $flushAfterMs = 10;

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
    /** @var resource|null the fallback without the sockets extension: a connected UDP stream */
    private static $stream = null;
    /** Where the socket or stream is connected to: "ip port". */
    private static string $target = '';

    /** Lines waiting to be sent, each with its "\n"; $batchLines of them, the oldest logged at $batchSince (hrtime). */
    private static string $batch = '';
    private static int $batchLines = 0;
    private static int $batchSince = 0;
    /** False until a line has been sent at once since start, fork or outage (see the class comment). */
    private static bool $anchored = false;
    /** While the receiver is down: the time() before which log() does nothing. */
    private static int $downUntil = 0;
    private static bool $atShutdown = false;

    /**
     * Sets the receiver as "host:port" ("[::1]:6666" for IPv6); "" turns
     * logging off.
     *
     * @throws InvalidArgumentException for a malformed address
     */
    public static function configure(string $addr): void
    {
        self::flush(); // what waits is for the receiver it was logged for
        self::$downUntil = 0;
        self::$anchored = false;
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
        if (self::$downUntil !== 0) {
            // The receiver refused the last batch: nothing to do until
            // the retry, as cheaply as the original class skips.
            if (time() < self::$downUntil) {
                self::$dropped++;
                return;
            }
            self::$downUntil = 0;
        }
        if (!(self::$enabled ?? self::logging())) {
            return;
        }
        $sent = hrtime(true);
        try {
            // Escaping only lengthens the message, so a message this long
            // needs no encoding to be known too long.
            $line = strlen($message) + 1 > self::MAX_DATAGRAM ? null : json_encode([$protocol, $direction, $message, $sent], self::ENCODING);
            if ($line === false) {
                self::$dropped++;
                return;
            }
            $shortened = false;
            if ($line === null || strlen($line) + 1 > self::MAX_DATAGRAM) {
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
                self::$batchSince = $sent;
            }
            self::$batch .= $line . "\n";
            self::$batchLines++;
            if ($shortened) {
                self::$shortened++;
            }
            if (!self::$anchored || $sent - self::$batchSince >= self::$flushAfterMs * 1_000_000 || strlen(self::$batch) >= self::$batchBytes) {
                self::flush();
            }
        } catch (Throwable) {
            self::$dropped++;
        }
    }

    /**
     * Sends the lines waiting, in one datagram. log() calls it as needed;
     * call it from a timer in an event loop that may stay idle, so that a
     * line does not wait for the next one. Lines that cannot be sent are
     * dropped and counted in $dropped.
     */
    public static function flush(): void
    {
        if (self::$batchLines === 0) {
            return;
        }
        $batch = self::$batch;
        $lines = self::$batchLines;
        self::$batch = '';
        self::$batchLines = 0;
        if (!self::$atShutdown) {
            // Lines still waiting when the process ends are sent too.
            self::$atShutdown = true;
            register_shutdown_function([self::class, 'flush']);
        }
        // Silences everything, including a host application's own error
        // handler, which would otherwise see socket warnings.
        set_error_handler(static fn (): bool => true);
        try {
            $result = self::send($batch);
        } catch (Throwable) {
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
            // Refused: nobody listens there now.
            self::$downUntil = time() + 1;
            self::$anchored = false;
        }
    }

    /**
     * The line for an oversized message: its head, if that fits in a
     * datagram; null if the message has no head to keep (not a WAMP
     * message, or a type without a payload to cut) or the head is too long.
     */
    private static function shortLine(string $protocol, string $direction, string $message, int $sent): ?string
    {
        $head = self::head($message);
        if ($head === null) {
            return null;
        }
        $line = json_encode([$protocol, $direction, $head, $sent], self::ENCODING);
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

    /**
     * Sends one datagram: true when sent, false when it could not be
     * (receiver unresolvable, socket failing or full), null when refused
     * (the receiver is down).
     */
    private static function send(string $datagram): ?bool
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
        $ip = self::resolve(self::$address);
        if ($ip === null) {
            return false;
        }
        if (function_exists('socket_send')) {
            return self::sendWithSocket($datagram, $ip);
        }
        return self::sendWithStream($datagram, $ip);
    }

    private static function sendWithSocket(string $datagram, string $ip): ?bool
    {
        $target = "$ip " . self::$port;
        if (self::$socket === null || self::$target !== $target) {
            $socket = socket_create(str_contains($ip, ':') ? AF_INET6 : AF_INET, SOCK_DGRAM, SOL_UDP);
            // Connected, so that a receiver that is down is reported (the
            // kernel's port-unreachable answer fails a later send);
            // non-blocking, so that a full send buffer fails at once.
            if ($socket === false || !socket_set_nonblock($socket) || !socket_connect($socket, $ip, self::$port)) {
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

    private static function sendWithStream(string $datagram, string $ip): ?bool
    {
        $target = 'udp://' . (str_contains($ip, ':') ? "[$ip]" : $ip) . ':' . self::$port;
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
        // A stream does not say why; a refused send fails outright while
        // a full buffer writes nothing.
        return $written === false ? null : false;
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
