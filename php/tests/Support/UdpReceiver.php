<?php

declare(strict_types=1);

namespace Wamp\Tests\Support;

/**
 * A UDP socket on a free loopback port that collects datagrams.
 */
final class UdpReceiver
{
    /** @var resource */
    private $socket;
    public readonly int $port;

    public function __construct(string $host = '127.0.0.1')
    {
        $address = str_contains($host, ':') ? "[$host]" : $host;
        $socket = stream_socket_server("udp://$address:0", $errno, $error, STREAM_SERVER_BIND);
        if ($socket === false) {
            throw new \RuntimeException("cannot bind UDP on $host: $error");
        }
        $this->socket = $socket;
        $name = stream_socket_get_name($socket, false);
        $this->port = (int) substr($name, strrpos($name, ':') + 1);
    }

    /**
     * Waits for up to $count datagrams, at most $timeout seconds in all.
     *
     * @return list<array{string, string}> [payload, sender address]
     */
    public function receive(int $count, float $timeout = 1.0): array
    {
        $received = [];
        $deadline = microtime(true) + $timeout;
        while (count($received) < $count) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                break;
            }
            $read = [$this->socket];
            $write = $except = null;
            if (stream_select($read, $write, $except, 0, (int) ($left * 1e6)) !== 1) {
                continue;
            }
            $payload = stream_socket_recvfrom($this->socket, 70000, 0, $peer);
            $received[] = [$payload, $peer];
        }
        return $received;
    }

    /** @return list<string> payloads only */
    public function payloads(int $count, float $timeout = 1.0): array
    {
        return array_column($this->receive($count, $timeout), 0);
    }

    public function close(): void
    {
        fclose($this->socket);
    }
}
