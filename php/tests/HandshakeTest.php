<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Handshake;
use Wamp\WebSocketUrl;

final class HandshakeTest extends TestCase
{
    private const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

    public function testAcceptMatchesRfcExample(): void
    {
        self::assertSame('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', Handshake::acceptFor(self::KEY));
    }

    public function testRequest(): void
    {
        $handshake = new Handshake(WebSocketUrl::parse('ws://127.0.0.1:9090/ws?x=1'), 'wamp.2.json', self::KEY);
        self::assertSame(
            "GET /ws?x=1 HTTP/1.1\r\n"
            . "Host: 127.0.0.1:9090\r\n"
            . "Upgrade: websocket\r\n"
            . "Connection: Upgrade\r\n"
            . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            . "Sec-WebSocket-Version: 13\r\n"
            . "Sec-WebSocket-Protocol: wamp.2.json\r\n"
            . "\r\n",
            $handshake->request(),
        );
        self::assertStringNotContainsStringIgnoringCase('origin', $handshake->request());
    }

    public function testKeyIsAFreshSixteenByteNonce(): void
    {
        $url = WebSocketUrl::parse('ws://localhost/');
        $first = new Handshake($url, 'wamp.2.json');
        $second = new Handshake($url, 'wamp.2.json');
        self::assertSame(16, strlen(base64_decode($first->key, true)));
        self::assertNotSame($first->key, $second->key);
    }

    public function testAcceptsAValidResponse(): void
    {
        $this->expectNotToPerformAssertions();
        self::handshake()->verify(self::response());
    }

    public function testHeaderNamesAndTokensAreCaseInsensitive(): void
    {
        $this->expectNotToPerformAssertions();
        self::handshake()->verify(
            "HTTP/1.1 101 Switching Protocols\r\n"
            . "upgrade: WebSocket\r\n"
            . "CONNECTION: keep-alive, Upgrade\r\n"
            . 'sec-websocket-accept: ' . Handshake::acceptFor(self::KEY) . "\r\n"
            . 'sec-websocket-protocol: wamp.2.json',
        );
    }

    /** @return iterable<string, array{string, string}> */
    public static function badResponses(): iterable
    {
        $good = self::response();
        yield 'refused' => ["HTTP/1.1 400 Bad Request\r\nContent-Length: 0", 'refused the upgrade: 400'];
        yield 'not HTTP' => ['SSH-2.0-OpenSSH', 'malformed status line'];
        yield 'wrong accept' => [str_replace(Handshake::acceptFor(self::KEY), Handshake::acceptFor('other'), $good), 'Sec-WebSocket-Accept'];
        yield 'no subprotocol' => [str_replace("\r\nSec-WebSocket-Protocol: wamp.2.json", '', $good), 'subprotocol ""'];
        yield 'other subprotocol' => [str_replace('wamp.2.json', 'wamp.2.msgpack', $good), 'wamp.2.msgpack'];
        yield 'no upgrade' => [str_replace("Upgrade: websocket\r\n", '', $good), 'Upgrade'];
        yield 'no connection' => [str_replace("Connection: Upgrade\r\n", '', $good), 'Connection'];
        yield 'extension' => [$good . "\r\nSec-WebSocket-Extensions: permessage-deflate", 'extension'];
        yield 'broken header' => [$good . "\r\nnot a header", 'malformed header'];
    }

    /** @dataProvider badResponses */
    public function testRejectsBadResponses(string $response, string $complaint): void
    {
        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessage($complaint);
        self::handshake()->verify($response);
    }

    public function testUrlParts(): void
    {
        $url = WebSocketUrl::parse('ws://router.example');
        self::assertSame(['router.example', 80, '/'], [$url->host, $url->port, $url->target]);
        self::assertSame('router.example', $url->hostHeader());
        self::assertSame('tcp://router.example:80', $url->tcpAddress());

        $url = WebSocketUrl::parse('ws://[::1]:9090/a/b?c=d');
        self::assertSame(['::1', 9090, '/a/b?c=d'], [$url->host, $url->port, $url->target]);
        self::assertSame('[::1]:9090', $url->hostHeader());
        self::assertSame('tcp://[::1]:9090', $url->tcpAddress());
    }

    /** @return iterable<string, array{string}> */
    public static function unsupportedUrls(): iterable
    {
        yield 'TLS' => ['wss://127.0.0.1/'];
        yield 'HTTP' => ['http://127.0.0.1/'];
        yield 'no host' => ['ws:///path'];
        yield 'not a URL' => ['127.0.0.1:9090'];
    }

    /** @dataProvider unsupportedUrls */
    public function testRejectsUnsupportedUrls(string $url): void
    {
        $this->expectException(\InvalidArgumentException::class);
        WebSocketUrl::parse($url);
    }

    private static function handshake(): Handshake
    {
        return new Handshake(WebSocketUrl::parse('ws://127.0.0.1:9090/'), 'wamp.2.json', self::KEY);
    }

    private static function response(): string
    {
        return "HTTP/1.1 101 Switching Protocols\r\n"
            . "Upgrade: websocket\r\n"
            . "Connection: Upgrade\r\n"
            . 'Sec-WebSocket-Accept: ' . Handshake::acceptFor(self::KEY) . "\r\n"
            . 'Sec-WebSocket-Protocol: wamp.2.json';
    }
}
