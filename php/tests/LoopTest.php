<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Loop;

final class LoopTest extends TestCase
{
    public function testTimersFireInDueOrder(): void
    {
        $loop = new Loop();
        $fired = [];
        foreach ([0.03, 0.01, 0.02, 0.0] as $delay) {
            $loop->addTimer($delay, function () use (&$fired, $delay): void {
                $fired[] = $delay;
            });
        }
        $loop->run();
        self::assertSame([0.0, 0.01, 0.02, 0.03], $fired);
    }

    public function testBeforeWaitRunsEachTimeTheLoopIsAboutToWait(): void
    {
        $loop = new Loop();
        $events = [];
        $loop->beforeWait(function () use (&$events): void {
            $events[] = 'wait';
        });
        $loop->addTimer(0.01, function () use (&$events): void {
            $events[] = 'first';
        });
        $loop->addTimer(0.02, function () use (&$events): void {
            $events[] = 'second';
        });
        $loop->run();
        self::assertSame(['wait', 'first', 'wait', 'second'], array_values(array_filter(
            $events,
            // Waits may repeat before a timer is due; none is skipped.
            static fn (string $e, int $i) => $e !== 'wait' || ($events[$i + 1] ?? '') !== 'wait',
            ARRAY_FILTER_USE_BOTH,
        )));
    }

    public function testTimersDueTogetherFireInTheOrderAdded(): void
    {
        $loop = new Loop();
        $fired = [];
        for ($i = 0; $i < 5; $i++) {
            $loop->addTimer(0.0, function () use (&$fired, $i): void {
                $fired[] = $i;
            });
        }
        $loop->run();
        self::assertSame([0, 1, 2, 3, 4], $fired);
    }

    public function testTimerWaitsAtLeastItsDelay(): void
    {
        $loop = new Loop();
        $start = hrtime(true);
        $loop->addTimer(0.05, fn () => null);
        $loop->run();
        self::assertGreaterThanOrEqual(0.05, (hrtime(true) - $start) / 1e9);
    }

    public function testCancelledTimersDoNotFire(): void
    {
        $loop = new Loop();
        $fired = [];
        $a = $loop->addTimer(0.01, function () use (&$fired): void {
            $fired[] = 'a';
        });
        $loop->addTimer(0.02, function () use (&$fired): void {
            $fired[] = 'b';
        });
        $loop->cancelTimer($a);
        $loop->cancelTimer($a);
        $loop->cancelTimer(12345);
        $loop->run();
        self::assertSame(['b'], $fired);
    }

    public function testTimerCanCancelALaterOne(): void
    {
        $loop = new Loop();
        $fired = [];
        $later = $loop->addTimer(0.02, function () use (&$fired): void {
            $fired[] = 'later';
        });
        $loop->addTimer(0.01, function () use ($loop, $later, &$fired): void {
            $fired[] = 'first';
            $loop->cancelTimer($later);
        });
        $loop->run();
        self::assertSame(['first'], $fired);
    }

    public function testThousandsOfTimersWithCancellations(): void
    {
        $loop = new Loop();
        $expected = [];
        $fired = [];
        $ids = [];
        $start = hrtime(true);
        for ($i = 0; $i < 5000; $i++) {
            // Delays in steps far longer than adding all the timers takes,
            // so the expected order does not depend on when each was added.
            $delay = random_int(0, 3) * 0.1;
            $ids[$i] = $loop->addTimer($delay, function () use (&$fired, $i, $delay): void {
                $fired[] = [$delay, $i];
            });
            $expected[] = [$delay, $i];
        }
        self::assertLessThan(0.1, (hrtime(true) - $start) / 1e9, 'adding took too long for this test');
        // Cancel three in four: enough to make the heap compact itself.
        foreach ($ids as $i => $id) {
            if ($i % 4 !== 0) {
                $loop->cancelTimer($id);
                unset($expected[$i]);
            }
        }
        $loop->run();
        self::assertLessThan(1.5, (hrtime(true) - $start) / 1e9);
        // By delay, and in the order added among equal delays.
        $expected = array_values($expected);
        sort($expected);
        self::assertSame($expected, $fired);
    }

    public function testRunReturnsWhenNothingIsLeft(): void
    {
        $loop = new Loop();
        $loop->run();
        $id = $loop->addTimer(10.0, fn () => null);
        $loop->cancelTimer($id);
        $start = hrtime(true);
        $loop->run();
        self::assertLessThan(0.5, (hrtime(true) - $start) / 1e9);
    }

    public function testStopEndsRunWithTimersPending(): void
    {
        $loop = new Loop();
        $loop->addTimer(0.01, fn () => $loop->stop());
        $laterFired = false;
        $loop->addTimer(5.0, function () use (&$laterFired): void {
            $laterFired = true;
        });
        $start = hrtime(true);
        $loop->run();
        self::assertLessThan(1.0, (hrtime(true) - $start) / 1e9);
        self::assertFalse($laterFired);
    }

    public function testZeroDelayTimerReArmingItselfDoesNotStarveStreams(): void
    {
        $loop = new Loop();
        [$a, $b] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        fwrite($b, 'x');
        $rearm = function () use ($loop, &$rearm): void {
            $loop->addTimer(0.0, $rearm);
        };
        $loop->addTimer(0.0, $rearm);
        $loop->addReadStream($a, fn () => $loop->stop());
        $loop->addTimer(2.0, fn () => self::fail('the stream was starved'));
        $loop->run();
        $this->addToAssertionCount(1);
    }

    public function testReadAndWriteStreams(): void
    {
        $loop = new Loop();
        [$a, $b] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $received = '';
        $loop->addWriteStream($a, function ($stream) use ($loop): void {
            fwrite($stream, 'ping');
            $loop->removeWriteStream($stream);
        });
        $loop->addReadStream($b, function ($stream) use ($loop, &$received): void {
            $received .= fread($stream, 100);
            $loop->removeReadStream($stream);
        });
        $loop->run();
        self::assertSame('ping', $received);
    }

    public function testWaitingForATimerDoesNotSpin(): void
    {
        $loop = new Loop();
        $loop->addTimer(0.3, fn () => null);
        $before = getrusage();
        $loop->run();
        $after = getrusage();
        $cpu = ($after['ru_utime.tv_sec'] - $before['ru_utime.tv_sec']) + ($after['ru_utime.tv_usec'] - $before['ru_utime.tv_usec']) / 1e6
            + ($after['ru_stime.tv_sec'] - $before['ru_stime.tv_sec']) + ($after['ru_stime.tv_usec'] - $before['ru_stime.tv_usec']) / 1e6;
        self::assertLessThan(0.05, $cpu);
    }

    public function testSignalsAreDispatchedFromTheLoop(): void
    {
        $loop = new Loop();
        $got = [];
        $loop->onSignal(SIGUSR1, function (int $signo) use ($loop, &$got): void {
            $got[] = $signo;
            $loop->stop();
        });
        $loop->addTimer(0.01, fn () => posix_kill(getmypid(), SIGUSR1));
        $fallback = $loop->addTimer(3.0, fn () => $loop->stop());
        $start = hrtime(true);
        $loop->run();
        $loop->cancelTimer($fallback);
        pcntl_signal(SIGUSR1, SIG_DFL);
        self::assertSame([SIGUSR1], $got);
        self::assertLessThan(0.5, (hrtime(true) - $start) / 1e9);
    }
}
