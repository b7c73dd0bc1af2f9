<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Frame;
use Wamp\Handshake;
use Wamp\Loop;
use Wamp\Tests\Support\FakeServer;
use Wamp\Tests\Support\LoopRunner;
use Wamp\WebSocket;

require_once __DIR__ . '/Support/FakeServer.php';
require_once __DIR__ . '/Support/LoopRunner.php';

final class WebSocketTest extends TestCase
{
    private Loop $loop;
    private ?FakeServer $server = null;
    private WebSocket $socket;
    private bool $open = false;
    /** @var list<array{string, bool}> */
    private array $messages = [];
    /** @var list<array{int, string}> */
    private array $closes = [];

    protected function setUp(): void
    {
        $this->loop = new Loop();
    }

    protected function tearDown(): void
    {
        $this->server?->shutdown();
    }

    public function testHandshakeRequest(): void
    {
        $this->connect();
        self::assertMatchesRegularExpression('#^GET /ws HTTP/1\.1\r\n#', $this->server->requestHead);
        self::assertStringContainsString("\r\nSec-WebSocket-Protocol: wamp.2.json", $this->server->requestHead);
        self::assertStringContainsString("\r\nSec-WebSocket-Version: 13", $this->server->requestHead);
        self::assertStringNotContainsStringIgnoringCase('origin:', $this->server->requestHead);
    }

    public function testSendsMaskedTextFramesOfEverySize(): void
    {
        $this->connect();
        $sizes = [0, 125, 126, 65535, 65536, 300000];
        foreach ($sizes as $size) {
            $this->socket->send(str_repeat('w', $size));
        }
        // The server's decoder insists on masked frames.
        LoopRunner::runUntil($this->loop, fn () => count($this->server->texts()) === count($sizes));
        self::assertSame($sizes, array_map('strlen', $this->server->texts()));
    }

    public function testReceivesMessagesIncludingFragmentedOnes(): void
    {
        $this->connect();
        $this->server->sendText('[1]');
        $this->server->sendRaw(
            Frame::encode('[2,', Frame::TEXT, false, null, false)
            . Frame::encode('ping', Frame::PING, false)
            . Frame::encode('"x"]', Frame::CONTINUATION, false),
        );
        $this->server->sendRaw(Frame::encode("\x00\x01", Frame::BINARY, false));
        LoopRunner::runUntil($this->loop, fn () => count($this->messages) === 3);
        self::assertSame([['[1]', false], ['[2,"x"]', false], ["\x00\x01", true]], $this->messages);
    }

    public function testMessagesInTheHandshakeSegmentAreNotLost(): void
    {
        $this->connect(afterHandshake: Frame::encode('early', Frame::TEXT, false));
        LoopRunner::runUntil($this->loop, fn () => count($this->messages) === 1);
        self::assertSame([['early', false]], $this->messages);
    }

    public function testAnswersPingWithPong(): void
    {
        $this->connect();
        $this->server->sendRaw(Frame::encode('are you there', Frame::PING, false));
        LoopRunner::runUntil($this->loop, fn () => $this->server->framesOf(Frame::PONG) !== []);
        self::assertSame('are you there', $this->server->framesOf(Frame::PONG)[0]->payload);
    }

    public function testAnswersServerCloseThenClosesTheStream(): void
    {
        $this->connect();
        $this->server->sendClose(pack('n', 1001) . 'going away');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== [] && $this->server->clientClosedTcp);
        self::assertSame([[1001, 'going away']], $this->closes);
        self::assertSame(pack('n', 1001), $this->server->framesOf(Frame::CLOSE)[0]->payload);
    }

    public function testEmptyServerCloseIsAnsweredEmpty(): void
    {
        $this->connect();
        $this->server->sendClose('');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== [] && $this->server->clientClosedTcp);
        self::assertSame([[WebSocket::NO_STATUS, '']], $this->closes);
        self::assertSame('', $this->server->framesOf(Frame::CLOSE)[0]->payload);
    }

    public function testClientCloseWaitsForTheServersClose(): void
    {
        $this->connect();
        $this->server->answersClose = false;
        $this->socket->close(1000, 'bye');
        LoopRunner::runUntil($this->loop, fn () => $this->server->framesOf(Frame::CLOSE) !== []);
        self::assertSame(pack('n', 1000) . 'bye', $this->server->framesOf(Frame::CLOSE)[0]->payload);
        self::assertSame([], $this->closes);
        // Nothing may be sent once closing.
        $this->socket->send('too late');
        $this->server->sendClose(pack('n', 1000));
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame([[1000, '']], $this->closes);
        self::assertSame([], $this->server->texts());
    }

    public function testClientCloseGivesUpOnASilentServer(): void
    {
        $this->connect();
        $this->server->answersClose = false;
        $start = hrtime(true);
        $this->socket->close();
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== [], 3.0);
        self::assertSame([[1000, '']], $this->closes);
        self::assertLessThan(1.5, (hrtime(true) - $start) / 1e9);
    }

    /** @return iterable<string, array{string, int}> */
    public static function protocolErrors(): iterable
    {
        yield 'masked server frame' => [Frame::encode('x', Frame::TEXT, true), 1002];
        yield 'reserved bit' => ["\xC1\x01x", 1002];
        yield 'invalid UTF-8' => [Frame::encode("\xC3\x28", Frame::TEXT, false), 1007];
        yield 'too big' => [Frame::encode(str_repeat('b', 2000), Frame::TEXT, false), 1009];
        yield 'bad close code' => [Frame::encode(pack('n', 1005), Frame::CLOSE, false), 1002];
        yield 'one-byte close' => [Frame::encode('x', Frame::CLOSE, false), 1002];
    }

    /** @dataProvider protocolErrors */
    public function testProtocolErrorsCloseTheConnection(string $bytes, int $code): void
    {
        $this->connect(maxMessage: 1024);
        $this->server->sendRaw($bytes);
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== [] && !$this->server->isConnected());
        self::assertSame($code, $this->closes[0][0]);
        self::assertSame(pack('n', $code), substr($this->server->framesOf(Frame::CLOSE)[0]->payload, 0, 2));
    }

    public function testServerDroppingTheConnectionIsAbnormalClosure(): void
    {
        $this->connect();
        $this->server->dropConnection();
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(WebSocket::ABNORMAL_CLOSURE, $this->closes[0][0]);
    }

    public function testRefusedHandshakeReportsWhy(): void
    {
        $this->connect(respond: fn () => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", expectOpen: false);
        self::assertFalse($this->open);
        self::assertSame(WebSocket::ABNORMAL_CLOSURE, $this->closes[0][0]);
        self::assertStringContainsString('403', $this->closes[0][1]);
    }

    public function testWrongAcceptIsRefused(): void
    {
        $respond = fn (string $key) => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            . 'Sec-WebSocket-Accept: ' . Handshake::acceptFor($key . 'x') . "\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n";
        $this->connect(respond: $respond, expectOpen: false);
        self::assertStringContainsString('Sec-WebSocket-Accept', $this->closes[0][1]);
    }

    public function testClosingBeforeOpeningDoesNothing(): void
    {
        $this->expectNotToPerformAssertions();
        (new WebSocket($this->loop, 'ws://127.0.0.1:1/', 'wamp.2.json'))->close();
    }

    public function testConnectionRefused(): void
    {
        // A port that was free a moment ago has no listener.
        $listener = stream_socket_server('tcp://127.0.0.1:0');
        $address = stream_socket_get_name($listener, false);
        fclose($listener);
        $this->openWithoutServer("ws://$address/");
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(WebSocket::ABNORMAL_CLOSURE, $this->closes[0][0]);
        self::assertStringContainsString('cannot connect', $this->closes[0][1]);
    }

    public function testHandshakeTimeout(): void
    {
        // Listening but never accepting, let alone answering.
        $listener = stream_socket_server('tcp://127.0.0.1:0');
        $this->openWithoutServer('ws://' . stream_socket_get_name($listener, false) . '/', 0.2);
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(WebSocket::ABNORMAL_CLOSURE, $this->closes[0][0]);
        self::assertStringContainsString('within 0.2s', $this->closes[0][1]);
        fclose($listener);
    }

    private function openWithoutServer(string $url, float $timeout = 10.0): void
    {
        $this->socket = new WebSocket($this->loop, $url, 'wamp.2.json');
        $this->socket->open(fn () => self::fail('opened'), fn () => null, function (int $code, string $reason): void {
            $this->closes[] = [$code, $reason];
        }, $timeout);
    }

    private function connect(
        ?\Closure $respond = null,
        string $afterHandshake = '',
        int $maxMessage = WebSocket::DEFAULT_MAX_MESSAGE,
        bool $expectOpen = true,
    ): void {
        $this->server = new FakeServer($this->loop, $respond, $afterHandshake);
        $this->socket = new WebSocket($this->loop, $this->server->url('/ws'), 'wamp.2.json', $maxMessage);
        $this->socket->open(
            function (): void {
                $this->open = true;
            },
            function (string $payload, bool $binary): void {
                $this->messages[] = [$payload, $binary];
            },
            function (int $code, string $reason): void {
                $this->closes[] = [$code, $reason];
            },
        );
        LoopRunner::runUntil($this->loop, fn () => $expectOpen ? $this->open : $this->closes !== []);
    }
}
