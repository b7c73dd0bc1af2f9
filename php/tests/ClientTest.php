<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Client;
use Wamp\Frame;
use Wamp\Invocation;
use Wamp\Loop;
use Wamp\Tests\Support\FakeServer;
use Wamp\Tests\Support\LoopRunner;
use Wamp\Tests\Support\UdpReceiver;

require_once __DIR__ . '/Support/FakeServer.php';
require_once __DIR__ . '/Support/LoopRunner.php';
require_once __DIR__ . '/Support/UdpReceiver.php';

/**
 * The client against a scripted router: what it puts on the wire, and how
 * it reacts to what it reads.
 */
final class ClientTest extends TestCase
{
    private const SESSION = 5550001;
    private const REGISTRATION = 777;

    private Loop $loop;
    private FakeServer $router;
    private Client $client;
    /** @var list<array{int, array}> */
    private array $joins = [];
    /** @var list<string> */
    private array $closes = [];

    protected function setUp(): void
    {
        $this->loop = new Loop();
        $this->router = new FakeServer($this->loop);
        $this->client = new Client($this->loop, $this->router->url(), 'realm1');
    }

    protected function tearDown(): void
    {
        $this->router->shutdown();
    }

    public function testHelloAnnouncesRolesAndAgent(): void
    {
        $this->connect();
        $hello = json_decode($this->router->texts()[0], true);
        self::assertSame(1, $hello[0]);
        self::assertSame('realm1', $hello[1]);
        self::assertSame('php-wamp-observer', $hello[2]['agent']);
        self::assertSame(
            [
                'caller' => ['features' => ['progressive_call_results' => true, 'call_timeout' => true]],
                'callee' => ['features' => ['call_canceling' => true]],
            ],
            $hello[2]['roles'],
        );
    }

    public function testWelcomeJoinsTheSession(): void
    {
        self::assertNull($this->client->sessionId());
        $this->join();
        self::assertSame([[self::SESSION, ['authrole' => 'anonymous']]], $this->joins);
        self::assertSame(self::SESSION, $this->client->sessionId());
    }

    public function testCallsCarryDictOptionsAndSequentialRequestIds(): void
    {
        $this->join();
        self::assertSame(1, $this->client->call('com.example.a'));
        self::assertSame(2, $this->client->call('hello3', ['hello world 2'], ['timeout' => 300]));
        self::assertSame(3, $this->client->call('b', ['k' => 'listed']));
        self::assertSame([
            '[48,1,{},"com.example.a",[]]',
            '[48,2,{"timeout":300},"hello3",["hello world 2"]]',
            '[48,3,{},"b",["listed"]]',
        ], $this->sentAfterHello(3));
    }

    public function testOnlyTheFinalResultEndsACall(): void
    {
        $this->join();
        $events = [];
        $this->client->call(
            'p',
            [],
            [],
            function (array $args, array $kwargs, array $details) use (&$events): void {
                $events[] = ['result', $args, $kwargs, $details];
            },
            null,
            function (array $args) use (&$events): void {
                $events[] = ['progress', $args];
            },
        );
        self::assertSame(['[48,1,{"receive_progress":true},"p",[]]'], $this->sentAfterHello(1));
        $this->router->sendText('[50,1,{"progress":true},["part 1"]]');
        $this->router->sendText('[50,1,{"progress":true},["part 2"]]');
        $this->router->sendText('[50,1,{},["done"],{"k":1}]');
        $this->router->sendText('[50,1,{},["after the end"]]');
        $this->settle();
        self::assertSame([
            ['progress', ['part 1']],
            ['progress', ['part 2']],
            ['result', ['done'], ['k' => 1], []],
        ], $events);
    }

    public function testCallError(): void
    {
        $this->join();
        $errors = [];
        $this->client->call('p', [], [], fn () => self::fail('no result expected'), function (string $error, array $args, array $kwargs, array $details) use (&$errors): void {
            $errors[] = [$error, $args, $kwargs, $details];
        });
        $this->router->sendText('[8,48,1,{},"wamp.error.timeout",["call timeout"]]');
        $this->router->sendText('[8,48,1,{},"wamp.error.again"]');
        $this->settle();
        self::assertSame([['wamp.error.timeout', ['call timeout'], [], []]], $errors);
    }

    public function testRegisterAndYield(): void
    {
        $this->join();
        $registered = [];
        $invocations = [];
        $this->client->register(
            'hello1',
            function (Invocation $invocation) use (&$invocations): void {
                $invocations[] = $invocation;
                $invocation->yield(['Hello from ' . $invocation->procedure]);
                $invocation->yield(['a second answer is not sent']);
            },
            function (int $registration) use (&$registered): void {
                $registered[] = $registration;
            },
        );
        self::assertSame(['[64,1,{},"hello1"]'], $this->sentAfterHello(1));
        $this->router->sendText('[65,1,' . self::REGISTRATION . ']');
        $this->router->sendText('[68,41,' . self::REGISTRATION . ',{},["hello world 1"],{"x":true}]');
        self::assertSame(['[64,1,{},"hello1"]', '[70,41,{},["Hello from hello1"]]'], $this->sentAfterHello(2));
        self::assertSame([self::REGISTRATION], $registered);
        self::assertCount(1, $invocations);
        self::assertSame(
            [41, 'hello1', ['hello world 1'], ['x' => true], []],
            [$invocations[0]->request, $invocations[0]->procedure, $invocations[0]->args, $invocations[0]->kwargs, $invocations[0]->details],
        );
        $this->settle();
        self::assertCount(3, $this->router->texts());
    }

    public function testPatternRegistrationTakesTheProcedureFromDetails(): void
    {
        $invocation = $this->registerAndInvoke('{"procedure":"com.example.hello"}');
        self::assertSame('com.example.hello', $invocation->procedure);
    }

    public function testErrorAnswerAndKeywordResults(): void
    {
        $first = $this->registerAndInvoke('{}', 41);
        $this->router->sendText('[68,42,' . self::REGISTRATION . ',{}]');
        $this->settle();
        $second = $this->invocations[1];
        $first->error('app.error.hello');
        $second->yield([], ['a' => 1]);
        self::assertSame([
            '[8,68,41,{},"app.error.hello",[]]',
            '[70,42,{},[],{"a":1}]',
        ], array_slice($this->sentAfterHello(3), 1));
    }

    public function testInterruptKillNoWaitSendsNothing(): void
    {
        $invocation = $this->registerAndInvoke('{}');
        $modes = [];
        $invocation->onInterrupt(function (string $mode) use (&$modes): void {
            $modes[] = $mode;
        });
        $this->router->sendText('[69,41,{"mode":"killnowait","reason":"wamp.error.timeout"}]');
        $this->settle();
        self::assertTrue($invocation->isInterrupted());
        self::assertSame(['killnowait'], $modes);
        $invocation->yield(['too late']);
        $invocation->error('app.error.too_late');
        $this->settle();
        self::assertSame(['[64,1,{},"hello1"]'], array_slice($this->router->texts(), 1));
    }

    public function testInterruptKillConfirmsCancellation(): void
    {
        $invocation = $this->registerAndInvoke('{}');
        $this->router->sendText('[69,41,{"mode":"kill"}]');
        self::assertSame('[8,68,41,{},"wamp.error.canceled",[]]', $this->sentAfterHello(2)[1]);
        self::assertTrue($invocation->isInterrupted());
        $invocation->yield();
        $this->settle();
        self::assertCount(3, $this->router->texts());
    }

    public function testInterruptAfterTheAnswerIsIgnored(): void
    {
        $invocation = $this->registerAndInvoke('{}');
        $invocation->yield(['in time']);
        $this->router->sendText('[69,41,{"mode":"kill"}]');
        $this->settle();
        self::assertFalse($invocation->isInterrupted());
        self::assertSame(['[64,1,{},"hello1"]', '[70,41,{},["in time"]]'], array_slice($this->router->texts(), 1));
    }

    public function testFailingHandlerAnswersWithRuntimeError(): void
    {
        $this->join();
        $this->client->register('hello1', fn () => throw new \RuntimeException('boom'));
        $this->router->sendText('[65,1,' . self::REGISTRATION . ']');
        $this->router->sendText('[68,41,' . self::REGISTRATION . ',{}]');
        self::assertSame('[8,68,41,{},"wamp.error.runtime_error",["boom"]]', $this->sentAfterHello(2)[1]);
    }

    public function testInvocationOfAnUnknownRegistrationIsRefused(): void
    {
        $this->join();
        $this->router->sendText('[68,41,999,{}]');
        self::assertSame(['[8,68,41,{},"wamp.error.no_such_registration",[]]'], $this->sentAfterHello(1));
    }

    public function testRegisterError(): void
    {
        $this->join();
        $errors = [];
        $this->client->register('hello1', fn () => null, fn () => self::fail('not registered'), function (string $error) use (&$errors): void {
            $errors[] = $error;
        });
        $this->router->sendText('[8,64,1,{},"wamp.error.procedure_already_exists"]');
        $this->settle();
        self::assertSame(['wamp.error.procedure_already_exists'], $errors);
    }

    public function testRouterGoodbyeIsAnsweredAndReported(): void
    {
        $this->join();
        $this->router->sendText('[6,{"message":"shutting down"},"wamp.close.system_shutdown"]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(['[6,{},"wamp.close.goodbye_and_out"]'], array_slice($this->router->texts(), 1));
        self::assertSame(['the router closed the session: wamp.close.system_shutdown'], $this->closes);
        self::assertNotEmpty($this->router->framesOf(Frame::CLOSE));
    }

    public function testLeaveSaysGoodbyeAndWaitsForTheRouters(): void
    {
        $this->join();
        $left = 0;
        $this->router->onText(function (string $text): void {
            if ($text === '[6,{},"wamp.close.close_realm"]') {
                $this->router->sendText('[6,{},"wamp.close.goodbye_and_out"]');
            }
        });
        $this->client->leave(function () use (&$left): void {
            $left++;
        });
        $this->client->leave(fn () => self::fail('a second leave is ignored'));
        $start = hrtime(true);
        LoopRunner::runUntil($this->loop, function () use (&$left): bool {
            return $left === 1;
        });
        self::assertLessThan(0.5, (hrtime(true) - $start) / 1e9);
        // Our GOODBYE only: the router's GOODBYE is not answered.
        self::assertSame(['[6,{},"wamp.close.close_realm"]'], array_slice($this->router->texts(), 1));
        self::assertSame([], $this->closes);
        $this->client->leave(function () use (&$left): void {
            $left++;
        });
        self::assertSame(2, $left);
    }

    public function testLeaveGivesUpOnASilentRouter(): void
    {
        $this->join();
        $left = false;
        $start = hrtime(true);
        $this->client->leave(function () use (&$left): void {
            $left = true;
        });
        LoopRunner::runUntil($this->loop, function () use (&$left): bool {
            return $left;
        }, 3.0);
        $took = (hrtime(true) - $start) / 1e9;
        self::assertGreaterThanOrEqual(1.0, $took);
        self::assertLessThan(1.5, $took);
    }

    public function testAnswersAfterGoodbyeAreNotSent(): void
    {
        $invocation = $this->registerAndInvoke('{}');
        $this->client->leave();
        $invocation->yield(['after goodbye']);
        $this->settle();
        self::assertSame('[6,{},"wamp.close.close_realm"]', array_slice($this->router->texts(), -1)[0]);
    }

    public function testAbortIsReported(): void
    {
        $this->connect();
        $this->router->sendText('[3,{"message":"no realm here"},"wamp.error.no_such_realm"]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(['wamp.error.no_such_realm: no realm here'], $this->closes);
        self::assertSame([], $this->joins);
    }

    public function testUnknownMessageTypesAreIgnored(): void
    {
        $this->join();
        $results = 0;
        $this->client->call('p', [], [], function () use (&$results): void {
            $results++;
        });
        $this->router->sendText('[36,1,2,{}]');
        $this->router->sendText('[255,"future"]');
        $this->router->sendText('[50,1,{}]');
        $this->settle();
        self::assertSame(1, $results);
        self::assertSame([], $this->closes);
    }

    /** @return iterable<string, array{string}> */
    public static function violations(): iterable
    {
        yield 'not JSON' => ['[50,'];
        yield 'not a list' => ['{"a":1}'];
        yield 'no message code' => ['["x"]'];
        yield 'bad request id' => ['[50,"1",{}]'];
        yield 'args not a list' => ['[50,1,{},{"a":1}]'];
        yield 'args a dict with index keys' => ['[50,1,{},{"0":"a"}]'];
        yield 'details a list' => ['[50,1,[],[]]'];
        yield 'kwargs an empty list' => ['[50,1,{},[],[]]'];
        yield 'invocation details a list' => ['[68,1,25,[],["x"]]'];
        yield 'error details a list' => ['[8,48,1,[],"wamp.error.x"]'];
        yield 'second WELCOME' => ['[2,1,{}]'];
    }

    /** @dataProvider violations */
    public function testProtocolViolationAborts(string $message): void
    {
        $this->join();
        $this->router->sendText($message);
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        $abort = json_decode($this->router->texts()[1], true);
        self::assertSame(3, $abort[0]);
        self::assertSame('wamp.error.protocol_violation', $abort[2]);
        self::assertStringStartsWith('protocol violation by the router', $this->closes[0]);
    }

    public function testDictsWithIndexKeysReachTheHandlerAndGoBackAsDicts(): void
    {
        $this->join();
        $seen = [];
        $this->client->register('hello1', function (Invocation $invocation) use (&$seen): void {
            $seen[] = [$invocation->args, $invocation->kwargs, $invocation->details];
            $invocation->yield($invocation->args, $invocation->kwargs);
        });
        $this->router->sendText('[65,1,25]');
        $this->router->sendText('[68,1,25,{},["x"],{"0":"zero"}]');
        self::assertSame(['[64,1,{},"hello1"]', '[70,1,{},["x"],{"0":"zero"}]'], $this->sentAfterHello(2));
        self::assertSame([[['x'], [0 => 'zero'], []]], $seen);
        $this->settle();
        self::assertSame([], $this->closes);
    }

    public function testResultWithIndexKeyedKwargsIsAccepted(): void
    {
        $this->join();
        $results = [];
        $this->client->call('p', [], [], function (array $args, array $kwargs, array $details) use (&$results): void {
            $results[] = [$args, $kwargs, $details];
        });
        $this->router->sendText('[50,1,{},[],{"0":"zero"}]');
        LoopRunner::runUntil($this->loop, function () use (&$results): bool {
            return $results !== [] || $this->closes !== [];
        });
        self::assertSame([[[], [0 => 'zero'], []]], $results);
        self::assertCount(2, $this->router->texts(), 'no ABORT');
    }

    public function testNestedDictsReachUserCodeAsPlainArrays(): void
    {
        $this->join();
        $results = [];
        $this->client->call('p', [], [], function (array $args, array $kwargs, array $details) use (&$results): void {
            $results[] = [$args, $kwargs, $details];
        });
        $this->router->sendText('[50,1,{"x":{"0":{}}},[{"a":{"b":1}},[],{}],{"k":{"0":"zero"},"l":[{}]}]');
        LoopRunner::runUntil($this->loop, function () use (&$results): bool {
            return $results !== [];
        });
        self::assertSame(
            [[[['a' => ['b' => 1]], [], []], ['k' => [0 => 'zero'], 'l' => [[]]], ['x' => [0 => []]]]],
            $results,
        );
    }

    public function testWelcomeDetailsWithIndexKeysJoin(): void
    {
        $this->connect();
        $this->router->sendText('[2,' . self::SESSION . ',{"0":"zero","roles":{"dealer":{}}}]');
        LoopRunner::runUntil($this->loop, fn () => $this->joins !== [] || $this->closes !== []);
        self::assertSame([[self::SESSION, [0 => 'zero', 'roles' => ['dealer' => []]]]], $this->joins);
    }

    public function testEmptyDictsAreStillSentAsObjects(): void
    {
        $invocation = $this->registerAndInvoke('{}');
        $invocation->yield([], []);
        $this->client->call('p', [[]], [], null, null);
        $this->client->leave();
        self::assertSame(
            ['[64,1,{},"hello1"]', '[70,41,{},[]]', '[48,2,{},"p",[[]]]', '[6,{},"wamp.close.close_realm"]'],
            $this->sentAfterHello(4),
        );
    }

    public function testOwnAbortReasonSurvivesTheRoutersReplyAbort(): void
    {
        $this->join();
        // Like a real router: an ABORT from the client is a violation too.
        $this->router->onText(function (string $text): void {
            if (str_starts_with($text, '[3,')) {
                $this->router->sendText('[3,{"message":"unexpected ABORT"},"wamp.error.protocol_violation"]');
            }
        });
        $this->router->sendText('[50,"1",{}]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        $this->settle();
        self::assertSame(['protocol violation by the router: field 1 of message 50 is not an id'], $this->closes);
        $sent = array_slice($this->router->texts(), 1);
        self::assertCount(1, $sent);
        self::assertSame([3, ['message' => 'field 1 of message 50 is not an id'], 'wamp.error.protocol_violation'], json_decode($sent[0], true));
    }

    public function testMessagesAfterOwnAbortAreIgnored(): void
    {
        $this->join();
        $results = 0;
        $this->client->call('p', [], [], function () use (&$results): void {
            $results++;
        });
        $this->router->onText(function (string $text): void {
            if (str_starts_with($text, '[3,')) {
                $this->router->sendText('[50,1,{},["late"]]');
                $this->router->sendText('not JSON');
                $this->router->sendText('[6,{},"wamp.close.system_shutdown"]');
                $this->router->sendText('[3,{},"wamp.error.late"]');
            }
        });
        $this->router->sendText('[2,1,{}]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        $this->settle();
        self::assertSame(0, $results);
        self::assertSame(['protocol violation by the router: WELCOME in an established session'], $this->closes);
        // CALL and the one ABORT: no GOODBYE answered, no second ABORT.
        self::assertCount(2, array_slice($this->router->texts(), 1));
    }

    public function testMessagesAfterOwnGoodbyeAreIgnoredButItsReplyEndsTheSession(): void
    {
        $this->join();
        $results = 0;
        $handled = 0;
        $this->client->register('hello1', function () use (&$handled): void {
            $handled++;
        });
        $this->router->sendText('[65,1,' . self::REGISTRATION . ']');
        $this->client->call('p', [], [], function () use (&$results): void {
            $results++;
        });
        $this->sentAfterHello(2);
        $this->router->onText(function (string $text): void {
            if ($text === '[6,{},"wamp.close.close_realm"]') {
                $this->router->sendText('[50,2,{},["late"]]');
                $this->router->sendText('[68,41,' . self::REGISTRATION . ',{}]');
                $this->router->sendText('[50,2,[],[]]');
                $this->router->sendText('[3,{},"wamp.error.late"]');
                $this->router->sendText('[6,{},"wamp.close.goodbye_and_out"]');
            }
        });
        $left = 0;
        $start = hrtime(true);
        $this->client->leave(function () use (&$left): void {
            $left++;
        });
        LoopRunner::runUntil($this->loop, function () use (&$left): bool {
            return $left === 1;
        });
        self::assertLessThan(0.5, (hrtime(true) - $start) / 1e9, 'the GOODBYE reply ends the session');
        $this->settle();
        self::assertSame([0, 0, 1], [$results, $handled, $left]);
        self::assertSame([], $this->closes);
        // REGISTER, CALL, GOODBYE: nothing after it (no ERROR, no ABORT).
        self::assertSame('[6,{},"wamp.close.close_realm"]', array_slice($this->router->texts(), -1)[0]);
        self::assertCount(4, $this->router->texts());
    }

    public function testRouterGoodbyeReasonSurvivesALaterAbort(): void
    {
        $this->join();
        $this->router->sendText('[6,{},"wamp.close.system_shutdown"]');
        $this->router->sendText('[3,{"message":"late"},"wamp.error.late"]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        $this->settle();
        self::assertSame(['the router closed the session: wamp.close.system_shutdown'], $this->closes);
        self::assertSame(['[6,{},"wamp.close.goodbye_and_out"]'], array_slice($this->router->texts(), 1));
    }

    public function testRouterAbortReasonSurvivesLaterMessages(): void
    {
        $this->join();
        $this->router->sendText('[3,{"message":"bye"},"wamp.error.first"]');
        $this->router->sendText('[3,{"message":"again"},"wamp.error.second"]');
        $this->router->sendText('[50,1,[],[]]');
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        $this->settle();
        self::assertSame(['wamp.error.first: bye'], $this->closes);
        self::assertCount(1, $this->router->texts(), 'nothing sent after HELLO');
    }

    public function testLogsTheProcedureIntoIndexKeyedInvocationDetails(): void
    {
        $receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$receiver->port}");
        $this->client = new Client($this->loop, $this->router->url(), 'realm1', 'in');

        $invocation = $this->registerAndInvoke('{"0":"zero"}', 41, '[{},[]],{}');
        $logged = array_map(fn (string $line) => json_decode($line, true), $receiver->lines(5, 0.5));
        $receiver->close();
        self::assertSame(
            ['wamp', 'in', '[68,41,' . self::REGISTRATION . ',{"0":"zero","procedure":"hello1"},[{},[]],{}]'],
            $logged[4] ?? null,
        );
        // The handler still sees what the router sent.
        self::assertSame([0 => 'zero'], $invocation->details);
        self::assertSame([[], []], $invocation->args);
        self::assertSame([], $this->closes);
    }

    public function testAnOversizedResultIsLoggedByItsHead(): void
    {
        $receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$receiver->port}");
        \WampObserver::$shortened = 0;
        \WampObserver::$dropped = 0;
        $this->client = new Client($this->loop, $this->router->url(), 'realm1', 'out');
        $this->join();
        $results = [];
        $this->client->call('hello1', [], ['timeout' => 300], function (array $args) use (&$results): void {
            $results[] = strlen($args[0]);
        });
        $this->router->sendText('[50,1,{},["' . str_repeat('r', 100000) . '"]]');
        LoopRunner::runUntil($this->loop, function () use (&$results): bool {
            return $results !== [];
        });
        $logged = array_map(fn (string $line) => json_decode($line, true)[2], $receiver->lines(4, 0.5));
        $receiver->close();
        self::assertSame([100000], $results);
        self::assertSame('[50,1,{}]', $logged[3] ?? null);
        self::assertSame([1, 0], [\WampObserver::$shortened, \WampObserver::$dropped]);
    }

    public function testConnectionLossIsReported(): void
    {
        $this->join();
        $this->router->dropConnection();
        LoopRunner::runUntil($this->loop, fn () => $this->closes !== []);
        self::assertSame(['connection closed (1006) connection lost'], $this->closes);
    }

    public function testCallingBeforeJoiningIsAProgrammingError(): void
    {
        $this->expectException(\LogicException::class);
        $this->client->call('p');
    }

    public function testLogsEveryMessageWithTheProcedureFilledIntoInvocations(): void
    {
        $receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$receiver->port}");
        $this->client = new Client($this->loop, $this->router->url(), 'realm1', 'in');

        $invocation = $this->registerAndInvoke('{}', 41, '["hello world 1"]');
        $this->router->sendText('[68,42,' . self::REGISTRATION . ',{"procedure":"hello1.pattern"}]');
        $this->settle();
        $invocation->yield(['Hello from hello1']);
        $this->settle();

        $wire = [
            $this->router->texts()[0],
            '[2,' . self::SESSION . ',{"authrole":"anonymous"}]',
            '[64,1,{},"hello1"]',
            '[65,1,' . self::REGISTRATION . ']',
            '[68,41,' . self::REGISTRATION . ',{"procedure":"hello1"},["hello world 1"]]',
            '[68,42,' . self::REGISTRATION . ',{"procedure":"hello1.pattern"}]',
            '[70,41,{},["Hello from hello1"]]',
        ];
        $logged = array_map(fn (string $line) => json_decode($line, true), $receiver->lines(count($wire) + 1, 0.5));
        $receiver->close();
        self::assertSame(array_map(fn (string $text) => ['wamp', 'in', $text], $wire), $logged);
        // The handler still sees what the router sent.
        self::assertSame([], $invocation->details);
    }

    /** @var list<Invocation> */
    private array $invocations = [];

    /** Joins, registers hello1 and delivers one INVOCATION with these details. */
    private function registerAndInvoke(string $details, int $request = 41, string $args = '[]'): Invocation
    {
        $this->join();
        $this->client->register('hello1', function (Invocation $invocation): void {
            $this->invocations[] = $invocation;
        });
        $this->router->sendText('[65,1,' . self::REGISTRATION . ']');
        $this->router->sendText("[68,$request," . self::REGISTRATION . ",$details,$args]");
        LoopRunner::runUntil($this->loop, fn () => $this->invocations !== []);
        return $this->invocations[0];
    }

    private function connect(): void
    {
        $this->client->connect(
            function (int $session, array $details): void {
                $this->joins[] = [$session, $details];
            },
            function (string $reason): void {
                $this->closes[] = $reason;
            },
        );
        LoopRunner::runUntil($this->loop, fn () => count($this->router->texts()) === 1);
    }

    private function join(): void
    {
        $this->connect();
        $this->router->sendText('[2,' . self::SESSION . ',{"authrole":"anonymous"}]');
        LoopRunner::runUntil($this->loop, fn () => $this->joins !== []);
    }

    /**
     * Waits until the client has sent $count messages after HELLO.
     *
     * @return list<string> those messages
     */
    private function sentAfterHello(int $count): array
    {
        LoopRunner::runUntil($this->loop, fn () => count($this->router->texts()) >= $count + 1);
        return array_slice($this->router->texts(), 1);
    }

    /** Gives messages in flight time to arrive and be handled. */
    private function settle(): void
    {
        LoopRunner::runFor($this->loop, 0.05);
    }
}
