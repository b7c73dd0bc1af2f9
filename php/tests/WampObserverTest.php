<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Tests\Support\UdpReceiver;

require_once __DIR__ . '/Support/UdpReceiver.php';

/**
 * The observer class. phpunit.xml runs these tests against the PHP 8 class
 * (../WampObserver.php), phpunit-php7.xml against the PHP 7 one
 * (../php7/WampObserver.php).
 */
final class WampObserverTest extends TestCase
{
    private const FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;

    private UdpReceiver $receiver;

    protected function setUp(): void
    {
        $this->receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$this->receiver->port}");
        \WampObserver::$dropped = 0;
        \WampObserver::$shortened = 0;
        \WampObserver::$batchBytes = 8192;
        \WampObserver::$flushAfterMs = 10;
    }

    protected function tearDown(): void
    {
        $this->receiver->close();
    }

    public function testBatchesLinesWithTheSendersTimeFromOneSourcePort(): void
    {
        $messages = ['[48,1,{"timeout":300},"hello3",["hello world 1"]]', '[50,1,{},["Hello from hello3"]]', 'x'];
        $before = hrtime(true);
        foreach ($messages as $message) {
            \WampObserver::log('wamp', 'out', $message);
        }
        $after = hrtime(true);
        // The first line after configure() leaves at once; the others
        // wait for company until flush().
        self::assertCount(1, $this->receiver->payloads(1));
        \WampObserver::flush();
        self::assertSame(
            array_map(fn (string $m) => json_encode(['wamp', 'out', $m], self::FLAGS), array_slice($messages, 1)),
            array_map(fn (string $line) => preg_replace('/,\d+\]$/', ']', $line), explode("\n", rtrim($this->receiver->payloads(1)[0]))) ,
        );
        $this->receiver->close();
        $this->receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$this->receiver->port}");
        foreach ($messages as $message) {
            \WampObserver::log('wamp', 'out', $message);
        }
        $received = $this->receiver->timedLines(3);
        self::assertSame(array_map(fn (string $m) => json_encode(['wamp', 'out', $m], self::FLAGS) . "\n", $messages), array_column($received, 0));
        self::assertCount(1, array_unique(array_column($received, 1)));
        $times = array_column($received, 2);
        self::assertSame($times, array_values(array_unique($times)), 'each line has its own time');
        $sorted = $times;
        sort($sorted);
        self::assertSame($sorted, $times);
        self::assertGreaterThan($after, $times[0]); // the second round began after the first
        self::assertGreaterThan($before, $times[0]);
    }

    public function testABatchLeavesWhenItsOldestLineHasWaitedFlushAfterMs(): void
    {
        \WampObserver::log('wamp', 'out', 'anchor'); // at once
        self::assertCount(1, $this->receiver->payloads(1));
        \WampObserver::$flushAfterMs = 5;
        $start = hrtime(true);
        \WampObserver::log('wamp', 'out', 'first');
        while (hrtime(true) - $start < 5_000_000) {
            // waiting out the interval on the sender's own clock
        }
        \WampObserver::log('wamp', 'out', 'second'); // the oldest has waited 5 ms: both leave
        $datagrams = $this->receiver->payloads(1);
        self::assertCount(1, $datagrams);
        self::assertSame(2, substr_count($datagrams[0], "\n"));
    }

    public function testABatchLeavesBeforeItPassesBatchBytes(): void
    {
        \WampObserver::log('wamp', 'out', 'anchor');
        self::assertCount(1, $this->receiver->payloads(1));
        \WampObserver::$batchBytes = 1000;
        \WampObserver::$flushAfterMs = 60_000;
        for ($i = 0; $i < 100; $i++) {
            \WampObserver::log('wamp', 'out', str_repeat('m', 80));
        }
        \WampObserver::flush();
        $datagrams = $this->receiver->payloads(20);
        self::assertSame(100, array_sum(array_map(fn (string $d) => substr_count($d, "\n"), $datagrams)));
        foreach ($datagrams as $datagram) {
            self::assertLessThanOrEqual(1000, strlen($datagram));
        }
        self::assertGreaterThanOrEqual(10, count($datagrams));
    }

    public function testBatchBytesZeroSendsEveryLineAtOnce(): void
    {
        \WampObserver::$batchBytes = 0;
        for ($i = 0; $i < 3; $i++) {
            \WampObserver::log('wamp', 'out', "alone $i");
        }
        self::assertCount(3, $this->receiver->receive(3));
    }

    public function testAReceiverThatIsDownIsSkippedUntilARetryASecondLater(): void
    {
        $port = $this->receiver->port;
        $this->receiver->close();
        \WampObserver::configure("127.0.0.1:$port");
        $this->assertSilent(function (): void {
            \WampObserver::log('wamp', 'out', 'sent, then refused by the kernel'); // at once
            \WampObserver::log('wamp', 'out', 'refused');
            \WampObserver::flush();
        });
        self::assertSame(1, \WampObserver::$dropped);
        $down = new \ReflectionProperty(\WampObserver::class, 'downUntil');
        self::assertGreaterThan(0, $down->getValue());
        for ($i = 0; $i < 1000; $i++) {
            \WampObserver::log('wamp', 'out', 'skipped');
        }
        self::assertSame(1001, \WampObserver::$dropped);
        // A second later, the receiver is back on the same port.
        $this->receiver = new UdpReceiver('127.0.0.1', $port);
        $down->setValue(null, time() - 1);
        \WampObserver::log('wamp', 'out', 'back');
        self::assertSame(["[\"wamp\",\"out\",\"back\"]\n"], $this->receiver->lines(1));
    }

    public function testSlashesAndUnicodeAreNotEscaped(): void
    {
        \WampObserver::log('wamp', 'in', 'a/b é ☃');
        self::assertSame(["[\"wamp\",\"in\",\"a/b é ☃\"]\n"], $this->receiver->lines(1));
    }

    public function testEmptyAddressTurnsLoggingOff(): void
    {
        \WampObserver::configure('');
        self::assertFalse(\WampObserver::logging());
        \WampObserver::log('wamp', 'out', 'nothing');
        self::assertSame([], $this->receiver->payloads(1, 0.2));
        self::assertSame(0, \WampObserver::$dropped);

        \WampObserver::configure("127.0.0.1:{$this->receiver->port}");
        self::assertTrue(\WampObserver::logging());
    }

    public function testAssigningThePropertiesStillWorks(): void
    {
        // The original class was configured this way.
        $other = new UdpReceiver();
        \WampObserver::$port = $other->port;
        \WampObserver::log('wamp', 'out', 'moved');
        self::assertSame(["[\"wamp\",\"out\",\"moved\"]\n"], $other->lines(1));
        $other->close();
    }

    public function testIpv6Receiver(): void
    {
        try {
            $receiver = new UdpReceiver('::1');
        } catch (\RuntimeException $e) {
            self::markTestSkipped('no IPv6 loopback: ' . $e->getMessage());
        }
        \WampObserver::configure("[::1]:{$receiver->port}");
        \WampObserver::log('wamp', 'out', 'six');
        self::assertSame(["[\"wamp\",\"out\",\"six\"]\n"], $receiver->lines(1));
        $receiver->close();
    }

    public function testHostNameIsResolved(): void
    {
        \WampObserver::configure("localhost:{$this->receiver->port}");
        \WampObserver::log('wamp', 'out', 'named');
        self::assertSame(["[\"wamp\",\"out\",\"named\"]\n"], $this->receiver->lines(1));
    }

    /** @return iterable<string, array{string}> */
    public static function malformedAddresses(): iterable
    {
        yield 'no port' => ['127.0.0.1'];
        yield 'no host' => [':6666'];
        yield 'port 0' => ['127.0.0.1:0'];
        yield 'port too big' => ['127.0.0.1:65536'];
        yield 'port not a number' => ['127.0.0.1:udp'];
    }

    /** @dataProvider malformedAddresses */
    public function testRejectsMalformedAddresses(string $address): void
    {
        $this->expectException(\InvalidArgumentException::class);
        \WampObserver::configure($address);
    }

    public function testClosedReceiverPortIsSilent(): void
    {
        $port = $this->receiver->port;
        $this->receiver->close();
        $this->receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:$port");
        $this->assertSilent(function (): void {
            for ($i = 0; $i < 5; $i++) {
                \WampObserver::log('wamp', 'out', "to nobody $i");
            }
        });
    }

    public function testUnresolvableHostIsSilentAndCounted(): void
    {
        \WampObserver::configure('no-such-host.invalid:6666');
        $this->assertSilent(function (): void {
            \WampObserver::log('wamp', 'out', 'lost');
            \WampObserver::log('wamp', 'out', 'lost again');
        });
        self::assertSame(2, \WampObserver::$dropped);
    }

    public function testLinesOverTheDatagramLimitAreDropped(): void
    {
        // '["wamp","out","",<time>]' plus "\n" is 19 bytes and the time's
        // digits around the message.
        $around = 19 + self::timeDigits();
        $this->assertSilent(function () use ($around): void {
            \WampObserver::log('wamp', 'out', str_repeat('a', 65000 - $around));
            \WampObserver::log('wamp', 'out', str_repeat('b', 65000 - $around + 1));
            \WampObserver::log('wamp', 'out', str_repeat('c', 1 << 20));
            \WampObserver::flush();
        });
        $received = $this->receiver->payloads(3, 0.5);
        self::assertCount(1, $received);
        self::assertSame(65000, strlen($received[0]));
        self::assertSame(2, \WampObserver::$dropped);
        self::assertSame(0, \WampObserver::$shortened);
    }

    public function testAnOversizedResultIsShortenedToItsHead(): void
    {
        $message = '[50,7,{"x":"a/é","empty":{},"list":[],"f":1.0},["' . str_repeat('r', 70000) . '"],{"k":{}}]';
        $this->assertSilent(fn () => \WampObserver::log('wamp', 'out', $message));
        $received = $this->receiver->payloads(1);
        self::assertCount(1, $received);
        self::assertLessThanOrEqual(65000, strlen($received[0]));
        self::assertStringEndsWith("\n", $received[0]);
        self::assertSame(substr_count($received[0], "\n"), 1);
        $line = preg_replace('/,\d+\]\n$/', "]\n", $received[0]);
        $logged = json_decode($line, false, 512, JSON_THROW_ON_ERROR);
        self::assertSame(['wamp', 'out'], array_slice($logged, 0, 2));
        self::assertSame('[50,7,{"x":"a/é","empty":{},"list":[],"f":1.0}]', $logged[2]);
        // Valid JSON, and exactly the original's first three elements.
        self::assertEquals(array_slice(json_decode($message, false), 0, 3), json_decode($logged[2], false, 512, JSON_THROW_ON_ERROR));
        self::assertSame(json_encode(['wamp', 'out', $logged[2]], self::FLAGS) . "\n", $line);
        self::assertSame([1, 0], [\WampObserver::$shortened, \WampObserver::$dropped]);
    }

    /** @return iterable<string, array{string, string}> */
    public static function oversizedMessages(): iterable
    {
        $big = '"' . str_repeat('p', 66000) . '"';
        yield 'CALL' => ["[48,1,{\"timeout\":300},\"com/hello.é\",[$big],{\"k\":1}]", '[48,1,{"timeout":300},"com/hello.é"]'];
        yield 'CALL, kwargs only' => ["[48,1,{},\"p\",[],{\"k\":$big}]", '[48,1,{},"p"]'];
        yield 'RESULT, empty details' => ["[50,2,{},[$big]]", '[50,2,{}]'];
        yield 'RESULT, progressive' => ["[50,2,{\"progress\":true},[$big]]", '[50,2,{"progress":true}]'];
        yield 'ERROR for a CALL' => ["[8,48,3,{},\"wamp.error.timeout\",[$big]]", '[8,48,3,{},"wamp.error.timeout"]'];
        yield 'ERROR for an INVOCATION' => ["[8,68,3,{},\"app.error.hello\",[],{\"k\":$big}]", '[8,68,3,{},"app.error.hello"]'];
        yield 'INVOCATION' => ["[68,4,25,{\"procedure\":\"hello1\"},[$big]]", '[68,4,25,{"procedure":"hello1"}]'];
        yield 'YIELD' => ["[70,5,{},[$big],{}]", '[70,5,{}]'];
        yield 'v1 CALL' => ["[2,\"f7de8d936fb95715\",\"hello4\",{\"msg\":$big}]", '[2,"f7de8d936fb95715","hello4"]'];
        yield 'v1 CALLRESULT' => ["[3,\"f7de8d936fb95715\",{\"msg\":$big}]", '[3,"f7de8d936fb95715"]'];
        yield 'v1 CALLERROR' => ["[4,\"c3356b633c7ff987\",\"app.error.hello\",$big]", '[4,"c3356b633c7ff987","app.error.hello"]'];
    }

    /** @dataProvider oversizedMessages */
    public function testOversizedMessagesAreShortenedByType(string $message, string $head): void
    {
        $this->assertSilent(fn () => \WampObserver::log('wamp', 'in', $message));
        self::assertSame([json_encode(['wamp', 'in', $head], self::FLAGS) . "\n"], $this->receiver->lines(2, 0.3));
        self::assertSame([1, 0], [\WampObserver::$shortened, \WampObserver::$dropped]);
    }

    /** @return iterable<string, array{string}> */
    public static function oversizedWithoutAHead(): iterable
    {
        $big = '"' . str_repeat('p', 66000) . '"';
        yield 'not JSON' => ["[50,1,{},[$big]"];
        yield 'not a list' => ["{\"0\":50,\"1\":$big}"];
        yield 'no type code' => ["[\"50\",1,{},[$big]]"];
        yield 'EVENT' => ["[36,1,2,{},[$big]]"];
        yield 'PUBLISH' => ["[16,1,{},\"topic\",[$big]]"];
        yield 'v2 WELCOME' => ["[2,1,{\"x\":$big}]"];
        yield 'v2 ABORT' => ["[3,{\"message\":$big},\"wamp.error.x\"]"];
        yield 'head too long: procedure' => ["[48,1,{},$big,[]]"];
        yield 'head too long: details' => ["[50,1,{\"x\":$big},[]]"];
        yield 'head too long: error URI' => ["[8,48,1,{},$big,[]]"];
        yield 'head is the whole message' => ["[50,1,{\"x\":$big}]"];
        yield 'head cannot be re-encoded' => ["[50,1,{\"x\":1e400},[$big]]"];
        yield 'invalid UTF-8' => ["[50,1,{},[\"\xC3\x28$big\"]]"];
    }

    /** @dataProvider oversizedWithoutAHead */
    public function testOversizedMessagesWithoutAHeadThatFitsAreDropped(string $message): void
    {
        $this->assertSilent(fn () => \WampObserver::log('wamp', 'in', $message));
        self::assertSame([], $this->receiver->lines(1, 0.2));
        self::assertSame([0, 1], [\WampObserver::$shortened, \WampObserver::$dropped]);
    }

    public function testShortenedOnlyWhenTheLineDoesNotFit(): void
    {
        // The line is the message plus 19 bytes and the time's digits, plus
        // one per quote escaped: [50,1,{},["..."]] has two.
        $fitting = 65000 - 19 - self::timeDigits() - 2;
        $fits = '[50,1,{},["' . str_repeat('a', $fitting - 14) . '"]]';
        $escapedTooLong = '[50,1,{},["' . str_repeat('b', $fitting + 1 - 14) . '"]]';
        \WampObserver::log('wamp', 'out', $fits);
        \WampObserver::log('wamp', 'out', $escapedTooLong);
        \WampObserver::flush();
        $received = $this->receiver->payloads(2);
        self::assertSame(65000, strlen($received[0]));
        self::assertSame(
            [json_encode(['wamp', 'out', $fits], self::FLAGS) . "\n", "[\"wamp\",\"out\",\"[50,1,{}]\"]\n"],
            preg_replace('/,\d+\]\n$/', "]\n", $received),
        );
        self::assertSame([1, 0], [\WampObserver::$shortened, \WampObserver::$dropped]);
    }

    /** How many digits hrtime(true) has now. */
    private static function timeDigits(): int
    {
        return strlen((string) hrtime(true));
    }

    public function testInvalidUtf8IsDroppedSilently(): void
    {
        $this->assertSilent(fn () => \WampObserver::log('wamp', 'out', "\xC3\x28"));
        self::assertSame(1, \WampObserver::$dropped);
    }

    public function testFloodingAReceiverThatDoesNotReadNeverBlocks(): void
    {
        $start = hrtime(true);
        $this->assertSilent(function (): void {
            $line = str_repeat('f', 60000);
            for ($i = 0; $i < 3000; $i++) {
                \WampObserver::log('wamp', 'out', $line);
            }
        });
        self::assertLessThan(2.0, (hrtime(true) - $start) / 1e9);
    }

    public function testAForkedChildSendsFromItsOwnPortAndNotItsParentsLines(): void
    {
        \WampObserver::log('wamp', 'out', 'parent'); // at once
        \WampObserver::log('wamp', 'out', 'parent, waiting');
        $pid = pcntl_fork();
        if ($pid === 0) {
            // The inherited batch is the parent's to send: the child's
            // first flush drops it (with what the child added to it).
            \WampObserver::flush();
            \WampObserver::log('wamp', 'out', 'child'); // at once
            // Skip PHPUnit's shutdown in the child.
            posix_kill(getmypid(), SIGKILL);
        }
        pcntl_waitpid($pid, $status);
        \WampObserver::log('wamp', 'out', 'parent again');
        $bySender = [];
        foreach ($this->receiver->timedLines(4) as [$line, $sender]) {
            $bySender[$sender][] = json_decode($line)[2];
        }
        sort($bySender);
        self::assertSame([['child'], ['parent', 'parent, waiting', 'parent again']], $bySender);
    }

    public function testEnvironmentIsReadOnFirstUse(): void
    {
        [$stdout, $stderr] = self::runPhp(
            [],
            'var_export(WampObserver::logging()); WampObserver::log("wamp", "in", "from env");',
            ['WAMP_OBSERVER_ADDR' => "127.0.0.1:{$this->receiver->port}"],
        );
        self::assertSame(['true', ''], [$stdout, $stderr]);
        self::assertSame(["[\"wamp\",\"in\",\"from env\"]\n"], $this->receiver->lines(1));

        [$stdout] = self::runPhp([], 'var_export(WampObserver::logging());', ['WAMP_OBSERVER_ADDR' => '']);
        self::assertSame('false', $stdout);

        [$stdout] = self::runPhp([], 'var_export(WampObserver::logging());', ['WAMP_OBSERVER_ADDR' => 'not an address']);
        self::assertSame('false', $stdout);

        [$stdout] = self::runPhp([], 'var_export([WampObserver::logging(), WampObserver::$address, WampObserver::$port]);', []);
        self::assertSame("array (\n  0 => true,\n  1 => '127.0.0.1',\n  2 => 6666,\n)", $stdout);
    }

    public function testFallsBackToStreamsWithoutTheSocketsExtension(): void
    {
        $closed = new UdpReceiver();
        $closedPort = $closed->port;
        $closed->close();
        // -n loads no php.ini, so no shared extensions: here, no sockets.
        [$stdout, $stderr] = self::runPhp(['-n', '-d', 'display_errors=stderr', '-d', 'error_reporting=-1'], <<<PHP
            echo extension_loaded('sockets') ? 'sockets' : 'streams';
            WampObserver::configure('127.0.0.1:{$this->receiver->port}');
            WampObserver::log('wamp', 'out', 'one');
            WampObserver::log('wamp', 'out', 'two');
            WampObserver::log('wamp', 'out', str_repeat('x', 70000));
            WampObserver::configure('127.0.0.1:$closedPort');
            for (\$i = 0; \$i < 3; \$i++) {
                WampObserver::log('wamp', 'out', 'refused');
                WampObserver::flush();
            }
            echo ' ', WampObserver::\$dropped;
            PHP, []);
        self::assertSame('', $stderr);
        // The connected fallback socket learns of the closed port (ICMP)
        // and fails the later sends: counted, never shown.
        self::assertMatchesRegularExpression('/^streams [1-4]$/', $stdout);
        $received = $this->receiver->timedLines(3, 0.5);
        self::assertSame(["[\"wamp\",\"out\",\"one\"]\n", "[\"wamp\",\"out\",\"two\"]\n"], array_column($received, 0));
        self::assertSame($received[0][1], $received[1][1]);
    }

    /** Runs $fn with an error handler that fails the test on any PHP error. */
    private function assertSilent(callable $fn): void
    {
        $errors = [];
        set_error_handler(function (int $level, string $message) use (&$errors): bool {
            $errors[] = $message;
            return true;
        });
        try {
            $fn();
        } finally {
            restore_error_handler();
        }
        self::assertSame([], $errors);
    }

    /**
     * Runs PHP code in a fresh process with the library loaded.
     *
     * @param list<string>          $options php command-line options
     * @param array<string, string> $env     added to this process's environment
     * @return array{string, string} stdout and stderr
     */
    private static function runPhp(array $options, string $code, array $env): array
    {
        // The WampObserver under test: the PHP 8 class, or the PHP 7 one
        // under phpunit-php7.xml.
        $observer = var_export((new \ReflectionClass(\WampObserver::class))->getFileName(), true);
        $autoload = var_export(dirname(__DIR__) . '/autoload.php', true);
        // Through env(1): proc_open would leave out a variable set to "".
        $command = ['env', '-u', 'WAMP_OBSERVER_ADDR'];
        foreach ($env as $name => $value) {
            $command[] = "$name=$value";
        }
        array_push($command, PHP_BINARY, ...$options);
        array_push($command, '-r', "require $observer; require $autoload; $code");
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        proc_close($process);
        return [$stdout, $stderr];
    }
}
