<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Json;
use Wamp\ProtocolViolation;

final class JsonTest extends TestCase
{
    public function testEmptyDictsAreObjectsAndEmptyListsArrays(): void
    {
        self::assertSame('[48,1,{},"hello1",[]]', Json::encode([48, 1, new \stdClass(), 'hello1', []]));
        self::assertSame('[70,5,{},[],{}]', Json::encode([70, 5, (object) [], [], (object) []]));
    }

    public function testTextIsWrittenAsIs(): void
    {
        self::assertSame('["com/example","é",1.0]', Json::encode(['com/example', 'é', 1.0]));
    }

    public function testUnencodableMessagesThrow(): void
    {
        $this->expectException(\JsonException::class);
        Json::encode(["\xC3\x28"]);
    }

    public function testDecodesDictsAsObjectsAndListsAsArrays(): void
    {
        $message = Json::decode('[50,1,{},["a",{"0":"zero"},[]],{"k":{"n":1}}]');
        self::assertEquals(
            [50, 1, new \stdClass(), ['a', (object) ['0' => 'zero'], []], (object) ['k' => (object) ['n' => 1]]],
            $message,
        );
        self::assertInstanceOf(\stdClass::class, $message[2]);
        self::assertSame([], $message[3][2]);
    }

    public function testDictsWithIndexKeysStayDicts(): void
    {
        $message = Json::decode('[68,1,25,{},["x"],{"0":"zero"}]');
        self::assertInstanceOf(\stdClass::class, $message[5]);
        self::assertSame(['0' => 'zero'], get_object_vars($message[5]));
    }

    public function testDecodedMessagesEncodeBackUnchanged(): void
    {
        foreach (['[50,1,{},[],{}]', '[68,1,25,{"0":"zero"},[{},[]],{"0":{}}]', '[48,1,{"timeout":1.5},"a/é",[]]'] as $text) {
            self::assertSame($text, Json::encode(Json::decode($text)));
        }
    }

    public function testPlainTurnsDictsIntoArraysAtEveryDepth(): void
    {
        self::assertSame(
            [50, 1, [], ['a', [0 => 'zero'], []], ['k' => ['n' => 1]]],
            Json::plain(Json::decode('[50,1,{},["a",{"0":"zero"},[]],{"k":{"n":1}}]')),
        );
        self::assertSame('x', Json::plain('x'));
        self::assertNull(Json::plain(null));
    }

    /** @return iterable<string, array{string}> */
    public static function notMessages(): iterable
    {
        yield 'broken' => ['[1,'];
        yield 'object' => ['{"0":1}'];
        yield 'object with index keys' => ['{"0":48,"1":1}'];
        yield 'empty object' => ['{}'];
        yield 'empty list' => ['[]'];
        yield 'string code' => ['["1"]'];
        yield 'scalar' => ['1'];
    }

    /** @dataProvider notMessages */
    public function testRejectsWhatIsNotAMessage(string $text): void
    {
        $this->expectException(ProtocolViolation::class);
        Json::decode($text);
    }
}
