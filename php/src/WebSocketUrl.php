<?php

declare(strict_types=1);

namespace Wamp;

/**
 * Where a ws:// URL points: the TCP endpoint and the HTTP request target.
 */
final class WebSocketUrl
{
    private function __construct(
        public string $host,
        public int $port,
        public string $target,
    ) {
    }

    /** @throws \InvalidArgumentException for anything but a ws:// URL */
    public static function parse(string $url): self
    {
        $parts = parse_url($url);
        if ($parts === false || !isset($parts['scheme'], $parts['host'])) {
            throw new \InvalidArgumentException("not a URL: $url");
        }
        if (strtolower($parts['scheme']) !== 'ws') {
            // wss:// would need TLS, which this client does not do.
            throw new \InvalidArgumentException("only ws:// URLs are supported: $url");
        }
        $target = ($parts['path'] ?? '') === '' ? '/' : $parts['path'];
        if (isset($parts['query'])) {
            $target .= '?' . $parts['query'];
        }
        // parse_url keeps the brackets of an IPv6 literal; drop them so
        // $host is the bare address.
        return new self(trim($parts['host'], '[]'), $parts['port'] ?? 80, $target);
    }

    /** The address for stream_socket_client. */
    public function tcpAddress(): string
    {
        return 'tcp://' . $this->bracketedHost() . ':' . $this->port;
    }

    /** The Host header value: the port is left out when it is the default. */
    public function hostHeader(): string
    {
        return $this->port === 80 ? $this->bracketedHost() : $this->bracketedHost() . ':' . $this->port;
    }

    private function bracketedHost(): string
    {
        return str_contains($this->host, ':') ? '[' . $this->host . ']' : $this->host;
    }
}
