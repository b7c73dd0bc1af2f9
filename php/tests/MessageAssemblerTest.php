<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Frame;
use Wamp\MessageAssembler;
use Wamp\ProtocolError;

final class MessageAssemblerTest extends TestCase
{
    public function testUnfragmentedMessagePassesThrough(): void
    {
        $message = (new MessageAssembler(100))->add(new Frame(true, Frame::TEXT, '[1]'));
        self::assertNotNull($message);
        self::assertSame([true, Frame::TEXT, '[1]'], [$message->fin, $message->opcode, $message->payload]);
    }

    public function testJoinsContinuationFrames(): void
    {
        $assembler = new MessageAssembler(100);
        self::assertNull($assembler->add(new Frame(false, Frame::TEXT, 'Hel')));
        self::assertNull($assembler->add(new Frame(false, Frame::CONTINUATION, 'lo ')));
        $message = $assembler->add(new Frame(true, Frame::CONTINUATION, 'world'));
        self::assertSame([Frame::TEXT, 'Hello world'], [$message->opcode, $message->payload]);

        // Ready for the next message.
        self::assertSame('next', $assembler->add(new Frame(true, Frame::BINARY, 'next'))->payload);
    }

    public function testUtf8MayBeSplitAcrossFragments(): void
    {
        $assembler = new MessageAssembler(100);
        $euro = "\xE2\x82\xAC";
        self::assertNull($assembler->add(new Frame(false, Frame::TEXT, substr($euro, 0, 1))));
        self::assertSame($euro, $assembler->add(new Frame(true, Frame::CONTINUATION, substr($euro, 1)))->payload);
    }

    public function testBinaryNeedNotBeUtf8(): void
    {
        self::assertSame("\xFF\xFE", (new MessageAssembler(100))->add(new Frame(true, Frame::BINARY, "\xFF\xFE"))->payload);
    }

    public function testRejectsContinuationWithoutStart(): void
    {
        self::assertRejected(ProtocolError::PROTOCOL_ERROR, new MessageAssembler(100), [new Frame(true, Frame::CONTINUATION, 'x')]);
    }

    public function testRejectsNewMessageInsideFragmentedOne(): void
    {
        self::assertRejected(ProtocolError::PROTOCOL_ERROR, new MessageAssembler(100), [
            new Frame(false, Frame::TEXT, 'a'),
            new Frame(true, Frame::TEXT, 'b'),
        ]);
    }

    public function testRejectsOversizedSingleFrameMessage(): void
    {
        self::assertRejected(ProtocolError::MESSAGE_TOO_BIG, new MessageAssembler(4), [new Frame(true, Frame::TEXT, '12345')]);
    }

    public function testRejectsMessageThatGrowsTooBigAcrossFragments(): void
    {
        self::assertRejected(ProtocolError::MESSAGE_TOO_BIG, new MessageAssembler(4), [
            new Frame(false, Frame::TEXT, '123'),
            new Frame(false, Frame::CONTINUATION, '45'),
        ]);
    }

    public function testRejectsInvalidUtf8Text(): void
    {
        self::assertRejected(ProtocolError::INVALID_PAYLOAD, new MessageAssembler(100), [new Frame(true, Frame::TEXT, "\xC3\x28")]);
    }

    /** @param list<Frame> $frames */
    private static function assertRejected(int $closeCode, MessageAssembler $assembler, array $frames): void
    {
        try {
            foreach ($frames as $frame) {
                $assembler->add($frame);
            }
        } catch (ProtocolError $e) {
            self::assertSame($closeCode, $e->closeCode);
            return;
        }
        self::fail('no ProtocolError');
    }
}
