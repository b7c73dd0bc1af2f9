<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Tests\Support\UdpReceiver;

require_once __DIR__ . '/Support/UdpReceiver.php';

/**
 * The command-line tools, run as processes, where no router is needed.
 */
final class ScriptsTest extends TestCase
{
    public function testUdpWriterLogsWholeCallsAndStopsByItself(): void
    {
        $receiver = new UdpReceiver();
        [$code, $stdout, $stderr] = self::runScript(
            ['writer.php', '--udp'],
            ['WAMP_OBSERVER_ADDR' => "127.0.0.1:{$receiver->port}", 'WRITER_CALLS' => '30'],
        );
        self::assertSame([0, ''], [$code, $stderr]);
        self::assertMatchesRegularExpression('/^writer --udp: 30 calls, (\d+) answered, (\d+) errors, (\d+) unanswered in \d+\.\ds\n$/', $stdout);
        preg_match('/(\d+) answered, (\d+) errors/', $stdout, $counts);
        $answers = (int) $counts[1] + (int) $counts[2];

        $lines = $receiver->timedLines(30 + $answers, 2.0);
        $receiver->close();
        self::assertCount(30 + $answers, $lines);
        self::assertCount(1, array_unique(array_column($lines, 1)), 'one source port');
        $calls = [];
        $n = 0;
        foreach (array_column($lines, 0) as $line) {
            self::assertStringEndsWith("\n", $line);
            [$protocol, $direction, $text] = json_decode($line, true, 512, JSON_THROW_ON_ERROR);
            self::assertSame(['wamp', 'in'], [$protocol, $direction]);
            $message = json_decode($text, true, 512, JSON_THROW_ON_ERROR);
            if ($message[0] === 2) {
                $n++;
                self::assertMatchesRegularExpression('/^hello[1-9]$/', $message[2]);
                self::assertSame(['msg' => "hello world $n details"], $message[3]);
                self::assertArrayNotHasKey($message[1], $calls, 'call ids are unique');
                $calls[$message[1]] = $n;
                continue;
            }
            self::assertArrayHasKey($message[1], $calls, 'an answer follows its call');
            $call = $calls[$message[1]];
            self::assertSame(
                $message[0] === 3
                    ? [3, $message[1], ['msg' => "hello world $call reply details"]]
                    : [4, $message[1], 'app.error.hello', "hello world $call error details"],
                $message,
            );
        }
        self::assertSame(30, $n);
    }

    public function testUdpWriterStopsCleanlyOnSigterm(): void
    {
        $process = proc_open(
            ['env', 'WAMP_OBSERVER_ADDR=', PHP_BINARY, self::script('writer.php'), '--udp'],
            [1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
        );
        usleep(300000);
        $start = hrtime(true);
        proc_terminate($process, SIGTERM);
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        $code = self::exitCode($process);
        self::assertLessThan(1.0, (hrtime(true) - $start) / 1e9);
        self::assertSame([0, ''], [$code, $stderr]);
        self::assertMatchesRegularExpression('/^writer --udp: (\d+) calls, (\d+) answered, (\d+) errors, (\d+) unanswered in 0\.\ds\n$/', $stdout);
        // Every call started was finished.
        preg_match_all('/\d+/', $stdout, $numbers);
        [$calls, $answered, $errors, $unanswered] = array_map('intval', $numbers[0]);
        self::assertGreaterThan(0, $calls);
        self::assertSame($calls, $answered + $errors + $unanswered);
    }

    public function testToolsFailWithoutARouter(): void
    {
        $free = stream_socket_server('tcp://127.0.0.1:0');
        $url = 'ws://' . stream_socket_get_name($free, false) . '/';
        fclose($free);
        foreach (['callee.php', 'writer.php'] as $script) {
            [$code, , $stderr] = self::runScript([$script], ['WAMP_URL' => $url, 'WAMP_OBSERVER_ADDR' => '']);
            self::assertSame(1, $code, $script);
            self::assertStringContainsString("lost the router at $url", $stderr, $script);
        }
    }

    /** @return iterable<string, array{list<string>, array<string, string>, string}> */
    public static function badInvocations(): iterable
    {
        yield 'unknown option' => [['writer.php', '--tcp'], [], 'usage'];
        yield 'bad call limit' => [['writer.php', '--udp'], ['WRITER_CALLS' => 'many'], 'WRITER_CALLS'];
        yield 'bad call timeout' => [['writer.php'], ['WRITER_CALL_TIMEOUT_MS' => '0'], 'WRITER_CALL_TIMEOUT_MS'];
        yield 'bad observer address' => [['callee.php'], ['WAMP_OBSERVER_ADDR' => 'nowhere'], 'host:port'];
    }

    /**
     * @dataProvider badInvocations
     * @param list<string>          $arguments
     * @param array<string, string> $env
     */
    public function testBadSettingsAreRefused(array $arguments, array $env, string $complaint): void
    {
        [$code, $stdout, $stderr] = self::runScript($arguments, $env);
        self::assertSame([2, ''], [$code, $stdout]);
        self::assertStringContainsString($complaint, $stderr);
    }

    /**
     * @param list<string>          $arguments the script, then its arguments
     * @param array<string, string> $env
     * @return array{int, string, string} exit code, stdout, stderr
     */
    private static function runScript(array $arguments, array $env): array
    {
        $command = ['env', '-u', 'WAMP_OBSERVER_ADDR', '-u', 'WRITER_CALLS', '-u', 'WRITER_CALL_TIMEOUT_MS', '-u', 'WAMP_URL'];
        foreach ($env as $name => $value) {
            $command[] = "$name=$value";
        }
        array_push($command, PHP_BINARY, self::script($arguments[0]), ...array_slice($arguments, 1));
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        return [self::exitCode($process), $stdout, $stderr];
    }

    /** @param resource $process */
    private static function exitCode($process): int
    {
        // proc_close reports -1 when the status was already collected.
        $status = proc_get_status($process);
        while ($status['running']) {
            usleep(10000);
            $status = proc_get_status($process);
        }
        proc_close($process);
        return $status['exitcode'];
    }

    private static function script(string $name): string
    {
        return dirname(__DIR__) . '/' . $name;
    }
}
