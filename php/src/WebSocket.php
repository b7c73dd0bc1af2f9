<?php

declare(strict_types=1);

namespace Wamp;

/**
 * An RFC 6455 client connection (ws:// only) driven by a Loop.
 *
 * Nothing blocks once open() returns (except resolving a host name):
 * connecting, the handshake, reads and writes all wait on the loop, and
 * outgoing bytes queue until the socket takes them.
 */
final class WebSocket
{
    public const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

    /** RFC 6455 §7.4.1 codes; 1005 and 1006 are never sent, only reported. */
    public const NORMAL_CLOSURE = 1000;
    public const NO_STATUS = 1005;
    public const ABNORMAL_CLOSURE = 1006;

    private const CONNECTING = 0;
    private const HANDSHAKING = 1;
    private const OPEN = 2;
    private const CLOSING = 3;
    private const CLOSED = 4;

    private const READ_CHUNK = 65536;
    /** A longer response head is not a WebSocket server talking. */
    private const MAX_RESPONSE_HEAD = 16384;
    /** How long to wait for the server to answer our close frame. */
    private const CLOSE_TIMEOUT = 1.0;
    /** Close frame payloads are at most 125 bytes, 2 of them the code. */
    private const MAX_CLOSE_REASON = 123;

    /** Closed until open(), so that close() before it does nothing. */
    private int $state = self::CLOSED;
    /** @var resource|null */
    private $stream = null;
    private ?Handshake $handshake = null;
    /** Response bytes read while the handshake is not complete. */
    private string $responseHead = '';
    private string $outgoing = '';
    private bool $watchingWrites = false;
    /** The connect/handshake deadline, then the close-handshake deadline. */
    private ?int $deadline = null;
    private FrameDecoder $decoder;
    private MessageAssembler $assembler;

    /** @var \Closure(): void */
    private \Closure $onOpen;
    /** @var \Closure(string, bool): void */
    private \Closure $onMessage;
    /** @var \Closure(int, string): void */
    private \Closure $onClose;

    public function __construct(
        private Loop $loop,
        private string $url,
        private string $subprotocol,
        int $maxMessage = self::DEFAULT_MAX_MESSAGE,
    ) {
        $this->decoder = new FrameDecoder($maxMessage);
        $this->assembler = new MessageAssembler($maxMessage);
    }

    /**
     * Starts connecting. Exactly one of these follows: $onOpen() once the
     * handshake succeeded, or $onClose() if it failed. After $onOpen,
     * $onMessage($payload, $isBinary) per message and finally one
     * $onClose($code, $reason) when the connection is gone, whoever ended
     * it (1006 when it broke without a close frame).
     *
     * @throws \InvalidArgumentException when the URL is not a ws:// URL
     */
    public function open(callable $onOpen, callable $onMessage, callable $onClose, float $timeout = 10.0): void
    {
        if ($this->handshake !== null) {
            throw new \LogicException('a WebSocket is opened once');
        }
        $url = WebSocketUrl::parse($this->url);
        $this->handshake = new Handshake($url, $this->subprotocol);
        $this->onOpen = \Closure::fromCallable($onOpen);
        $this->onMessage = \Closure::fromCallable($onMessage);
        $this->onClose = \Closure::fromCallable($onClose);
        $this->state = self::CONNECTING;

        // Small WAMP messages must not wait for Nagle's algorithm.
        $context = stream_context_create(['socket' => ['tcp_nodelay' => true]]);
        $flags = STREAM_CLIENT_CONNECT | STREAM_CLIENT_ASYNC_CONNECT;
        $stream = @stream_socket_client($url->tcpAddress(), $errno, $error, $timeout, $flags, $context);
        if ($stream === false) {
            // Report from the loop, not from inside open(): callers expect
            // callbacks after open() returned.
            $reason = "cannot connect to {$url->tcpAddress()}: $error";
            $this->setDeadline(0.0, fn () => $this->terminate(self::ABNORMAL_CLOSURE, $reason));
            return;
        }
        stream_set_blocking($stream, false);
        // select() cannot see bytes PHP buffered itself; read unbuffered.
        stream_set_read_buffer($stream, 0);
        $this->stream = $stream;
        $this->setDeadline($timeout, fn () => $this->terminate(
            self::ABNORMAL_CLOSURE,
            "no WebSocket connection to {$this->url} within {$timeout}s",
        ));
        // An asynchronous connect reports completion as writability.
        $this->loop->addWriteStream($stream, fn () => $this->connected());
    }

    /**
     * Queues one text message. Once closing has begun nothing more may be
     * sent (RFC 6455 §5.5.1), so later messages are dropped.
     */
    public function send(string $text): void
    {
        if ($this->state === self::OPEN) {
            $this->write(Frame::encode($text, Frame::TEXT));
        }
    }

    /**
     * Starts the closing handshake: sends a close frame and waits (at most
     * CLOSE_TIMEOUT) for the server's before dropping the connection.
     */
    public function close(int $code = self::NORMAL_CLOSURE, string $reason = ''): void
    {
        if (strlen($reason) > self::MAX_CLOSE_REASON) {
            throw new \InvalidArgumentException('a close reason is at most ' . self::MAX_CLOSE_REASON . ' bytes');
        }
        switch ($this->state) {
            case self::CONNECTING:
            case self::HANDSHAKING:
                $this->terminate($code, $reason);
                break;
            case self::OPEN:
                $this->state = self::CLOSING;
                $this->write(Frame::encode(pack('n', $code) . $reason, Frame::CLOSE));
                // The write may have found the connection already gone.
                if ($this->state === self::CLOSING) {
                    $this->setDeadline(self::CLOSE_TIMEOUT, fn () => $this->terminate($code, $reason));
                }
                break;
        }
    }

    private function connected(): void
    {
        if ($this->stream === null) {
            return;
        }
        $this->loop->removeWriteStream($this->stream);
        // A refused connect also reports writable; only a connected
        // socket has a peer name.
        if (stream_socket_get_name($this->stream, true) === false) {
            $this->terminate(self::ABNORMAL_CLOSURE, "cannot connect to {$this->url}: connection refused");
            return;
        }
        $this->state = self::HANDSHAKING;
        $this->loop->addReadStream($this->stream, fn () => $this->readable());
        $this->write($this->handshake->request());
    }

    private function readable(): void
    {
        $data = @fread($this->stream, self::READ_CHUNK);
        if ($data === false || ($data === '' && feof($this->stream))) {
            $this->terminate(self::ABNORMAL_CLOSURE, 'connection lost');
            return;
        }
        if ($data === '') {
            return;
        }
        if ($this->state === self::HANDSHAKING) {
            $this->readHandshake($data);
            return;
        }
        $this->receive($data);
    }

    private function readHandshake(string $data): void
    {
        $this->responseHead .= $data;
        $end = strpos($this->responseHead, "\r\n\r\n");
        if ($end === false) {
            if (strlen($this->responseHead) > self::MAX_RESPONSE_HEAD) {
                $this->terminate(self::ABNORMAL_CLOSURE, 'handshake response head too long');
            }
            return;
        }
        // Frames may follow the head in the same read.
        $rest = substr($this->responseHead, $end + 4);
        $head = substr($this->responseHead, 0, $end);
        $this->responseHead = '';
        try {
            $this->handshake->verify($head);
        } catch (\RuntimeException $e) {
            $this->terminate(self::ABNORMAL_CLOSURE, 'handshake failed: ' . $e->getMessage());
            return;
        }
        $this->state = self::OPEN;
        $this->cancelDeadline();
        ($this->onOpen)();
        if ($rest !== '') {
            $this->receive($rest);
        }
    }

    private function receive(string $data): void
    {
        try {
            foreach ($this->decoder->feed($data) as $frame) {
                if ($this->state === self::CLOSED) {
                    return;
                }
                $this->handleFrame($frame);
            }
        } catch (ProtocolError $e) {
            $this->failConnection($e);
        }
    }

    /** @throws ProtocolError */
    private function handleFrame(Frame $frame): void
    {
        switch ($frame->opcode) {
            case Frame::PING:
                if ($this->state === self::OPEN) {
                    $this->write(Frame::encode($frame->payload, Frame::PONG));
                }
                return;
            case Frame::PONG:
                // We send no pings; an unsolicited pong is allowed and means nothing.
                return;
            case Frame::CLOSE:
                [$code, $reason] = self::parseClose($frame->payload);
                if ($this->state === self::OPEN) {
                    // Echo the code back (§5.5.1); "no status" goes back as
                    // an empty close frame.
                    $this->write(Frame::encode($code === self::NO_STATUS ? '' : pack('n', $code), Frame::CLOSE));
                }
                $this->terminate($code, $reason);
                return;
        }
        $message = $this->assembler->add($frame);
        if ($message !== null) {
            ($this->onMessage)($message->payload, $message->opcode === Frame::BINARY);
        }
    }

    /**
     * @return array{int, string} code and reason
     * @throws ProtocolError
     */
    private static function parseClose(string $payload): array
    {
        if ($payload === '') {
            return [self::NO_STATUS, ''];
        }
        if (strlen($payload) === 1) {
            throw new ProtocolError('close frame with a 1-byte payload');
        }
        $code = unpack('n', $payload)[1];
        // Codes a peer may send: RFC 6455 §7.4.1 and the IANA registry
        // (1012-1014), plus the ranges for libraries and applications.
        $valid = ($code >= 1000 && $code <= 1003) || ($code >= 1007 && $code <= 1014) || ($code >= 3000 && $code <= 4999);
        if (!$valid) {
            throw new ProtocolError("invalid close code $code");
        }
        $reason = substr($payload, 2);
        if (preg_match('//u', $reason) !== 1) {
            throw new ProtocolError('close reason is not valid UTF-8', ProtocolError::INVALID_PAYLOAD);
        }
        return [$code, $reason];
    }

    /** Fails the connection (§7.1.7): tell the server why, then drop it. */
    private function failConnection(ProtocolError $e): void
    {
        if ($this->state === self::OPEN) {
            $reason = substr($e->getMessage(), 0, self::MAX_CLOSE_REASON);
            $this->write(Frame::encode(pack('n', $e->closeCode) . $reason, Frame::CLOSE));
        }
        $this->terminate($e->closeCode, $e->getMessage());
    }

    private function write(string $bytes): void
    {
        $this->outgoing .= $bytes;
        $this->flush();
    }

    private function flush(): void
    {
        if ($this->stream === null || $this->outgoing === '') {
            return;
        }
        $written = @fwrite($this->stream, $this->outgoing);
        if ($written === false) {
            $this->terminate(self::ABNORMAL_CLOSURE, 'connection lost while writing');
            return;
        }
        if ($written > 0) {
            $this->outgoing = substr($this->outgoing, $written);
        }
        // Watch for writability only while bytes wait: a socket is almost
        // always writable, and watching it idly would spin the loop.
        $pending = $this->outgoing !== '';
        if ($pending !== $this->watchingWrites) {
            $this->watchingWrites = $pending;
            if ($pending) {
                $this->loop->addWriteStream($this->stream, fn () => $this->flush());
            } else {
                $this->loop->removeWriteStream($this->stream);
            }
        }
    }

    /** Drops the connection and reports it, once. */
    private function terminate(int $code, string $reason): void
    {
        if ($this->state === self::CLOSED) {
            return;
        }
        $this->state = self::CLOSED;
        $this->cancelDeadline();
        if ($this->stream !== null) {
            $this->loop->removeReadStream($this->stream);
            $this->loop->removeWriteStream($this->stream);
            // Last chance for a queued close frame; it is small enough for
            // any socket buffer that is not completely full.
            if ($this->outgoing !== '') {
                @fwrite($this->stream, $this->outgoing);
            }
            fclose($this->stream);
            $this->stream = null;
        }
        $this->outgoing = '';
        ($this->onClose)($code, $reason);
    }

    private function setDeadline(float $seconds, callable $callback): void
    {
        $this->cancelDeadline();
        $this->deadline = $this->loop->addTimer($seconds, $callback);
    }

    private function cancelDeadline(): void
    {
        if ($this->deadline !== null) {
            $this->loop->cancelTimer($this->deadline);
            $this->deadline = null;
        }
    }
}
