<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Frame;
use Wamp\FrameDecoder;
use Wamp\ProtocolError;

final class FrameTest extends TestCase
{
    private const KEY = "\x37\xfa\x21\x3d";

    public function testSevenBitLength(): void
    {
        self::assertSame("\x81\x05Hello", Frame::encode('Hello', Frame::TEXT, false));
        self::assertSame("\x81\x7D" . str_repeat('a', 125), Frame::encode(str_repeat('a', 125), Frame::TEXT, false));
    }

    public function testSixteenBitLength(): void
    {
        self::assertSame("\x81\x7E\x00\x7E", substr(Frame::encode(str_repeat('a', 126), Frame::TEXT, false), 0, 4));
        self::assertSame("\x82\x7E\xFF\xFF", substr(Frame::encode(str_repeat('a', 65535), Frame::BINARY, false), 0, 4));
    }

    public function testSixtyFourBitLength(): void
    {
        $frame = Frame::encode(str_repeat('a', 65536), Frame::TEXT, false);
        self::assertSame("\x81\x7F\x00\x00\x00\x00\x00\x01\x00\x00", substr($frame, 0, 10));
        self::assertSame(10 + 65536, strlen($frame));
    }

    public function testMaskedFrameMatchesRfcExample(): void
    {
        // RFC 6455 §5.7: a masked "Hello" from a client.
        self::assertSame("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", Frame::encode('Hello', Frame::TEXT, true, self::KEY));
    }

    public function testMaskedLengthsCarryTheMaskBit(): void
    {
        self::assertSame("\x81\xFE\x00\x7E" . self::KEY, substr(Frame::encode(str_repeat('a', 126), Frame::TEXT, true, self::KEY), 0, 8));
        self::assertSame("\x81\xFF", substr(Frame::encode(str_repeat('a', 65536), Frame::TEXT, true, self::KEY), 0, 2));
    }

    public function testEachFrameGetsAFreshMask(): void
    {
        $first = Frame::encode(str_repeat('x', 32), Frame::TEXT);
        $second = Frame::encode(str_repeat('x', 32), Frame::TEXT);
        self::assertNotSame(substr($first, 2, 4), substr($second, 2, 4));
    }

    /** @return iterable<string, array{int, bool}> */
    public static function lengthsAndMasking(): iterable
    {
        foreach ([0, 1, 125, 126, 127, 65535, 65536, 70000] as $length) {
            yield "$length bytes, masked" => [$length, true];
            yield "$length bytes, unmasked" => [$length, false];
        }
    }

    /** @dataProvider lengthsAndMasking */
    public function testRoundTrip(int $length, bool $masked): void
    {
        $payload = $length === 0 ? '' : random_bytes($length);
        $frames = (new FrameDecoder(1 << 20, $masked))->feed(Frame::encode($payload, Frame::BINARY, $masked));
        self::assertCount(1, $frames);
        self::assertTrue($frames[0]->fin);
        self::assertSame(Frame::BINARY, $frames[0]->opcode);
        self::assertSame($payload, $frames[0]->payload);
    }

    public function testMaskingIsItsOwnInverse(): void
    {
        $payload = random_bytes(1001);
        self::assertSame($payload, Frame::applyMask(Frame::applyMask($payload, self::KEY), self::KEY));
        self::assertNotSame($payload, Frame::applyMask($payload, self::KEY));
    }

    public function testSplitAtEveryByteOffsetGivesTheSameFrames(): void
    {
        $stream = Frame::encode('first', Frame::TEXT, false)
            . Frame::encode('ping!', Frame::PING, false)
            . Frame::encode(str_repeat('m', 300), Frame::TEXT, false, null, false)
            . Frame::encode(str_repeat('n', 70000), Frame::CONTINUATION, false)
            . Frame::encode('', Frame::TEXT, false);
        $expected = self::describe((new FrameDecoder(1 << 20))->feed($stream));
        self::assertCount(5, $expected);

        for ($cut = 0; $cut <= strlen($stream); $cut++) {
            $decoder = new FrameDecoder(1 << 20);
            $frames = array_merge($decoder->feed(substr($stream, 0, $cut)), $decoder->feed(substr($stream, $cut)));
            self::assertSame($expected, self::describe($frames), "split at byte $cut");
        }
    }

    public function testByteByByteFeeding(): void
    {
        $stream = Frame::encode(str_repeat('h', 200), Frame::TEXT, true, self::KEY)
            . Frame::encode('bye', Frame::CLOSE, true, self::KEY);
        $decoder = new FrameDecoder(1 << 20, true);
        $frames = [];
        foreach (str_split($stream) as $byte) {
            array_push($frames, ...$decoder->feed($byte));
        }
        self::assertSame([[true, Frame::TEXT, str_repeat('h', 200)], [true, Frame::CLOSE, 'bye']], self::describe($frames));
    }

    public function testControlFrames(): void
    {
        $frames = (new FrameDecoder(1024))->feed(
            Frame::encode("\x03\xE8bye", Frame::CLOSE, false)
            . Frame::encode('p', Frame::PING, false)
            . Frame::encode('p', Frame::PONG, false),
        );
        self::assertSame([Frame::CLOSE, Frame::PING, Frame::PONG], array_map(fn (Frame $f) => $f->opcode, $frames));
        self::assertTrue($frames[0]->isControl());
        self::assertFalse((new Frame(true, Frame::TEXT, ''))->isControl());
        self::assertFalse((new Frame(true, Frame::CONTINUATION, ''))->isControl());
    }

    public function testRejectsMaskedServerFrames(): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'masked server frame',
            fn () => (new FrameDecoder(1024))->feed(Frame::encode('x', Frame::TEXT, true)),
        );
    }

    public function testServerSideRejectsUnmaskedClientFrames(): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'unmasked client frame',
            fn () => (new FrameDecoder(1024, true))->feed(Frame::encode('x', Frame::TEXT, false)),
        );
    }

    /** @return iterable<string, array{int}> */
    public static function reservedBits(): iterable
    {
        yield 'RSV1' => [0x40];
        yield 'RSV2' => [0x20];
        yield 'RSV3' => [0x10];
    }

    /** @dataProvider reservedBits */
    public function testRejectsReservedBits(int $bit): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'reserved bits',
            fn () => (new FrameDecoder(1024))->feed(chr(0x81 | $bit) . "\x01x"),
        );
    }

    /** @return iterable<string, array{int}> */
    public static function reservedOpcodes(): iterable
    {
        foreach ([0x3, 0x7, 0xB, 0xF] as $opcode) {
            yield sprintf('0x%X', $opcode) => [$opcode];
        }
    }

    /** @dataProvider reservedOpcodes */
    public function testRejectsReservedOpcodes(int $opcode): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'reserved opcode',
            fn () => (new FrameDecoder(1024))->feed(chr(0x80 | $opcode) . "\x00"),
        );
    }

    public function testRejectsLongControlFrames(): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'longer than 125',
            fn () => (new FrameDecoder(1024))->feed(Frame::encode(str_repeat('p', 126), Frame::PING, false)),
        );
    }

    public function testRejectsFragmentedControlFrames(): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'fragmented control frame',
            fn () => (new FrameDecoder(1024))->feed(Frame::encode('p', Frame::PING, false, null, false)),
        );
    }

    public function testRejectsOversizedFrameFromItsHeaderAlone(): void
    {
        // Only the header of a 1 MiB frame: the decoder must not wait for
        // (and buffer) the payload to know it is too big.
        self::assertProtocolError(
            ProtocolError::MESSAGE_TOO_BIG,
            'exceeds the limit',
            fn () => (new FrameDecoder(65536))->feed("\x81\x7F" . pack('J', 1 << 20)),
        );
    }

    public function testRejectsLengthWithMostSignificantBitSet(): void
    {
        self::assertProtocolError(
            ProtocolError::PROTOCOL_ERROR,
            'most significant bit',
            fn () => (new FrameDecoder(65536))->feed("\x81\x7F\x80\x00\x00\x00\x00\x00\x00\x01"),
        );
    }

    public function testEncodeRejectsBadArguments(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        Frame::encode('x', Frame::TEXT, true, 'abc');
    }

    /** Runs $decode and checks it fails with this close code and message. */
    private static function assertProtocolError(int $closeCode, string $message, callable $decode): void
    {
        try {
            $decode();
        } catch (ProtocolError $e) {
            self::assertSame($closeCode, $e->closeCode);
            self::assertStringContainsString($message, $e->getMessage());
            return;
        }
        self::fail('no ProtocolError');
    }

    /** @param list<Frame> $frames @return list<array{bool, int, string}> */
    private static function describe(array $frames): array
    {
        return array_map(fn (Frame $f) => [$f->fin, $f->opcode, $f->payload], $frames);
    }
}
