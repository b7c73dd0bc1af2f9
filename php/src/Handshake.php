<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The client side of the RFC 6455 opening handshake, without I/O: builds
 * the upgrade request and checks the server's answer.
 */
final class Handshake
{
    /** RFC 6455 §1.3: appended to the key before hashing. */
    private const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

    public string $key;

    public function __construct(
        private WebSocketUrl $url,
        private string $subprotocol,
        ?string $key = null,
    ) {
        // The key must be a fresh random nonce per connection (§4.1).
        $this->key = $key ?? base64_encode(random_bytes(16));
    }

    /**
     * The upgrade request. There is deliberately no Origin header: this is
     * not a browser, and a server may refuse origins it does not know.
     */
    public function request(): string
    {
        return "GET {$this->url->target} HTTP/1.1\r\n"
            . "Host: {$this->url->hostHeader()}\r\n"
            . "Upgrade: websocket\r\n"
            . "Connection: Upgrade\r\n"
            . "Sec-WebSocket-Key: {$this->key}\r\n"
            . "Sec-WebSocket-Version: 13\r\n"
            . "Sec-WebSocket-Protocol: {$this->subprotocol}\r\n"
            . "\r\n";
    }

    /**
     * Checks the response head (status line and headers, without the blank
     * line) per RFC 6455 §4.1.
     *
     * @throws \RuntimeException naming what is wrong
     */
    public function verify(string $head): void
    {
        $lines = explode("\r\n", $head);
        $status = array_shift($lines);
        if (preg_match('#^HTTP/1\.1 (\d{3})(?: (.*))?$#', $status, $match) !== 1) {
            throw new \RuntimeException("malformed status line: $status");
        }
        if ($match[1] !== '101') {
            throw new \RuntimeException("server refused the upgrade: $match[1] " . ($match[2] ?? ''));
        }
        $headers = self::parseHeaders($lines);
        if (strtolower($headers['upgrade'] ?? '') !== 'websocket') {
            throw new \RuntimeException('missing "Upgrade: websocket" header');
        }
        $connection = array_map('trim', explode(',', strtolower($headers['connection'] ?? '')));
        if (!in_array('upgrade', $connection, true)) {
            throw new \RuntimeException('missing "Connection: Upgrade" header');
        }
        if (($headers['sec-websocket-accept'] ?? '') !== self::acceptFor($this->key)) {
            throw new \RuntimeException('wrong Sec-WebSocket-Accept');
        }
        $protocol = $headers['sec-websocket-protocol'] ?? '';
        if ($protocol !== $this->subprotocol) {
            throw new \RuntimeException("server chose subprotocol \"$protocol\", not {$this->subprotocol}");
        }
        // No extension was offered, so the server may not pick one (§4.1).
        if (($headers['sec-websocket-extensions'] ?? '') !== '') {
            throw new \RuntimeException('server chose an extension that was not offered');
        }
    }

    public static function acceptFor(string $key): string
    {
        return base64_encode(sha1($key . self::GUID, true));
    }

    /**
     * @param list<string> $lines
     * @return array<string, string> lower-cased names; repeated headers are
     *                               joined with commas as HTTP allows
     */
    private static function parseHeaders(array $lines): array
    {
        $headers = [];
        foreach ($lines as $line) {
            $colon = strpos($line, ':');
            if ($colon === false) {
                throw new \RuntimeException("malformed header line: $line");
            }
            $name = strtolower(trim(substr($line, 0, $colon)));
            $value = trim(substr($line, $colon + 1));
            $headers[$name] = isset($headers[$name]) ? $headers[$name] . ', ' . $value : $value;
        }
        return $headers;
    }
}
