<?php

declare(strict_types=1);

namespace Wamp\Tests\Support;

use Wamp\Loop;

/**
 * Runs a loop until a condition holds, failing the test if it takes too long.
 */
final class LoopRunner
{
    /** How often the condition is checked. */
    private const POLL = 0.001;

    public static function runUntil(Loop $loop, callable $condition, float $timeout = 2.0): void
    {
        $timedOut = false;
        $deadline = $loop->addTimer($timeout, function () use ($loop, &$timedOut): void {
            $timedOut = true;
            $loop->stop();
        });
        $poll = null;
        $check = function () use ($loop, $condition, &$poll, &$check): void {
            if ($condition()) {
                $loop->stop();
                return;
            }
            $poll = $loop->addTimer(self::POLL, $check);
        };
        $poll = $loop->addTimer(0.0, $check);
        $loop->run();
        $loop->cancelTimer($deadline);
        $loop->cancelTimer($poll);
        if ($timedOut) {
            throw new \RuntimeException("condition not met within {$timeout}s");
        }
    }

    /** Runs the loop for a fixed time, e.g. to show that nothing happens. */
    public static function runFor(Loop $loop, float $seconds): void
    {
        $timer = $loop->addTimer($seconds, fn () => $loop->stop());
        $loop->run();
        $loop->cancelTimer($timer);
    }
}
