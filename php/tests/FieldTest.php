<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Field;
use Wamp\Json;
use Wamp\ProtocolViolation;

/**
 * Field reads a message as Json::decode returns it: a JSON object and a
 * JSON array stay apart on the wire level, whatever the object's keys look
 * like, and dicts come out as plain PHP arrays.
 */
final class FieldTest extends TestCase
{
    public function testDictKeysThatLookLikeListIndexesAreADict(): void
    {
        $message = Json::decode('[50,1,{"0":"zero","1":"one"},[],{"0":"zero"}]');
        self::assertSame([0 => 'zero', 1 => 'one'], Field::dict($message, 2));
        self::assertSame([0 => 'zero'], Field::kwargs($message, 4));
    }

    public function testEmptyDictIsAnEmptyArray(): void
    {
        self::assertSame([], Field::dict(Json::decode('[50,1,{}]'), 2));
    }

    /** @return iterable<string, array{string}> */
    public static function notDicts(): iterable
    {
        yield 'empty list' => ['[50,1,[]]'];
        yield 'list' => ['[50,1,["zero"]]'];
        yield 'string' => ['[50,1,"{}"]'];
        yield 'null' => ['[50,1,null]'];
        yield 'absent' => ['[50,1]'];
    }

    /** @dataProvider notDicts */
    public function testListsAndScalarsAreNotDicts(string $text): void
    {
        $this->expectException(ProtocolViolation::class);
        $this->expectExceptionMessage('field 2 of message 50 is not a dict');
        Field::dict(Json::decode($text), 2);
    }

    public function testAbsentKwargsAreEmptyButAnEmptyListIsNoDict(): void
    {
        self::assertSame([], Field::kwargs(Json::decode('[50,1,{},[]]'), 4));
        $this->expectException(ProtocolViolation::class);
        Field::kwargs(Json::decode('[50,1,{},[],[]]'), 4);
    }

    public function testArgsMustBeAListNotADictWithIndexKeys(): void
    {
        self::assertSame(['x'], Field::args(Json::decode('[50,1,{},["x"]]'), 3));
        self::assertSame([], Field::args(Json::decode('[50,1,{}]'), 3));
        $this->expectException(ProtocolViolation::class);
        Field::args(Json::decode('[50,1,{},{"0":"x"}]'), 3);
    }

    public function testNestedDictsBecomePlainArraysToo(): void
    {
        $message = Json::decode('[50,1,{"a":{"b":{},"0":{"c":1}}},[{"d":[{"e":{}}]},[]],{"k":{"0":"zero"}}]');
        self::assertSame(['a' => ['b' => [], 0 => ['c' => 1]]], Field::dict($message, 2));
        self::assertSame([['d' => [['e' => []]]], []], Field::args($message, 3));
        self::assertSame(['k' => [0 => 'zero']], Field::kwargs($message, 4));
    }

    public function testIdsAndUris(): void
    {
        $message = Json::decode('[8,48,9007199254740992,{},"wamp.error.timeout"]');
        self::assertSame(48, Field::int($message, 1));
        self::assertSame(9007199254740992, Field::id($message, 2));
        self::assertSame('wamp.error.timeout', Field::uri($message, 4));
        $this->expectException(ProtocolViolation::class);
        Field::id(Json::decode('[50,0]'), 1);
    }
}
