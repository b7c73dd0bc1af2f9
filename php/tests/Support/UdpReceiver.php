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

    public function __construct(string $host = '127.0.0.1', int $port = 0)
    {
        $address = str_contains($host, ':') ? "[$host]" : $host;
        $socket = stream_socket_server("udp://$address:$port", $errno, $error, STREAM_SERVER_BIND);
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

    /**
     * Flushes what WampObserver holds, then waits for up to $count lines,
     * at most $timeout seconds in all, and returns each as the original
     * class wrote it: without the sender's time, which it checks is there
     * (an integer, hrtime(true) of the sending process).
     *
     * @return list<string> lines, each with its "\n"
     */
    public function lines(int $count, float $timeout = 1.0): array
    {
        return array_column($this->timedLines($count, $timeout), 0);
    }

    /**
     * lines(), with each line's sender address and time.
     *
     * @return list<array{string, string, int}> [line without its time, sender, time]
     */
    public function timedLines(int $count, float $timeout = 1.0): array
    {
        \WampObserver::flush();
        $lines = [];
        $deadline = microtime(true) + $timeout;
        while (count($lines) < $count && ($left = $deadline - microtime(true)) > 0) {
            foreach ($this->receive(1, $left) as [$payload, $sender]) {
                foreach (explode("\n", rtrim($payload, "\n")) as $line) {
                    if (preg_match('/^(.*),(\d+)\]$/s', $line, $m) !== 1) {
                        throw new \UnexpectedValueException("a line without the sender's time: $line");
                    }
                    $lines[] = [$m[1] . "]\n", $sender, (int) $m[2]];
                }
            }
        }
        return $lines;
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
