<?php

declare(strict_types=1);

namespace Wamp\Tests\Support;

use Wamp\Frame;
use Wamp\FrameDecoder;
use Wamp\Handshake;
use Wamp\Loop;

/**
 * A scripted WebSocket server on a free loopback port, run by the same loop
 * as the client under test. It accepts one connection, answers the
 * handshake (correctly unless told otherwise), records the client's frames
 * and sends whatever a test tells it to.
 */
final class FakeServer
{
    /** @var resource */
    private $server;
    /** @var resource|null */
    private $connection = null;
    private string $requestBuffer = '';
    private bool $upgraded = false;
    private readonly FrameDecoder $decoder;

    public ?string $requestHead = null;
    /** @var list<Frame> every frame the client sent, in order */
    public array $frames = [];
    public bool $clientClosedTcp = false;
    /**
     * Like a real server, answer the client's close frame and hang up,
     * unless this side started the closing handshake.
     */
    public bool $answersClose = true;
    private bool $closeSent = false;
    /** @var \Closure(string): void|null */
    private ?\Closure $onText = null;

    /**
     * @param \Closure(string): string|null $respond builds the handshake
     *        response from the client's key; null answers correctly
     */
    public function __construct(
        private readonly Loop $loop,
        private readonly ?\Closure $respond = null,
        private readonly string $afterHandshake = '',
    ) {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($server === false) {
            throw new \RuntimeException("cannot listen: $error");
        }
        $this->server = $server;
        $this->decoder = new FrameDecoder(64 * 1024 * 1024, true);
        $loop->addReadStream($server, fn () => $this->accept());
    }

    public function url(string $path = '/'): string
    {
        return 'ws://' . stream_socket_get_name($this->server, false) . $path;
    }

    /** $callback($text) for each text frame from the client, as it arrives. */
    public function onText(callable $callback): void
    {
        $this->onText = \Closure::fromCallable($callback);
    }

    /** @return list<string> payloads of the client's text frames */
    public function texts(): array
    {
        $texts = [];
        foreach ($this->frames as $frame) {
            if ($frame->opcode === Frame::TEXT) {
                $texts[] = $frame->payload;
            }
        }
        return $texts;
    }

    /** @return list<Frame> the client's frames with this opcode */
    public function framesOf(int $opcode): array
    {
        return array_values(array_filter($this->frames, fn (Frame $f) => $f->opcode === $opcode));
    }

    public function sendText(string $text): void
    {
        $this->sendRaw(Frame::encode($text, Frame::TEXT, false));
    }

    /** Starts the closing handshake from the server side. */
    public function sendClose(string $payload): void
    {
        $this->closeSent = true;
        $this->sendRaw(Frame::encode($payload, Frame::CLOSE, false));
    }

    /** Sends bytes as they are; small amounts only (a blocking write). */
    public function sendRaw(string $bytes): void
    {
        fwrite($this->connection, $bytes);
    }

    public function isConnected(): bool
    {
        return $this->connection !== null;
    }

    public function isUpgraded(): bool
    {
        return $this->upgraded;
    }

    public function dropConnection(): void
    {
        $this->loop->removeReadStream($this->connection);
        fclose($this->connection);
        $this->connection = null;
    }

    public function shutdown(): void
    {
        if ($this->connection !== null) {
            $this->dropConnection();
        }
        $this->loop->removeReadStream($this->server);
        fclose($this->server);
    }

    private function accept(): void
    {
        $connection = stream_socket_accept($this->server, 0);
        if ($connection === false) {
            return;
        }
        $this->connection = $connection;
        $this->loop->addReadStream($connection, fn () => $this->readable());
    }

    private function readable(): void
    {
        $data = fread($this->connection, 65536);
        if ($data === '' || $data === false) {
            if (feof($this->connection)) {
                $this->clientClosedTcp = true;
                $this->dropConnection();
            }
            return;
        }
        if (!$this->upgraded) {
            $this->requestBuffer .= $data;
            $end = strpos($this->requestBuffer, "\r\n\r\n");
            if ($end === false) {
                return;
            }
            $this->requestHead = substr($this->requestBuffer, 0, $end);
            $this->upgraded = true;
            preg_match('/^Sec-WebSocket-Key: (.*)$/mi', $this->requestHead, $match);
            $key = trim($match[1] ?? '');
            $this->sendRaw(($this->respond ?? self::correctResponse(...))($key) . $this->afterHandshake);
            $data = substr($this->requestBuffer, $end + 4);
        }
        foreach ($this->decoder->feed($data) as $frame) {
            $this->frames[] = $frame;
            if ($frame->opcode === Frame::TEXT && $this->onText !== null) {
                ($this->onText)($frame->payload);
            }
            if ($frame->opcode === Frame::CLOSE && $this->answersClose && !$this->closeSent) {
                $this->sendRaw(Frame::encode(substr($frame->payload, 0, 2), Frame::CLOSE, false));
                $this->dropConnection();
                return;
            }
        }
    }

    private static function correctResponse(string $key): string
    {
        return "HTTP/1.1 101 Switching Protocols\r\n"
            . "Upgrade: websocket\r\n"
            . "Connection: Upgrade\r\n"
            . 'Sec-WebSocket-Accept: ' . Handshake::acceptFor($key) . "\r\n"
            . "Sec-WebSocket-Protocol: wamp.2.json\r\n"
            . "\r\n";
    }
}
