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

    public function testDecodesDictsAsArrays(): void
    {
        self::assertSame([50, 1, [], ['a'], ['k' => ['n' => 1]]], Json::decode('[50,1,{},["a"],{"k":{"n":1}}]'));
    }

    /** @return iterable<string, array{string}> */
    public static function notMessages(): iterable
    {
        yield 'broken' => ['[1,'];
        yield 'object' => ['{"0":1}'];
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
