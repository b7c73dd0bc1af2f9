<?php

declare(strict_types=1);

namespace Wamp\Load;

/**
 * How a simulated callee treats one call: the original tool's
 * distribution, from independent draws.
 */
final class ReplyPlan
{
    private function __construct(
        /** Seconds before the answer: 5-10 ms, plus 300 ms one time in nine. */
        public float $delay,
        /** One call in nine is never answered. */
        public bool $answered,
        /** One answer in 99 is an error rather than a result. */
        public bool $error,
    ) {
    }

    public static function draw(): self
    {
        $delay = random_int(50, 100) / 10000;
        if (random_int(1, 9) === 5) {
            $delay += 0.3;
        }
        $answered = random_int(1, 9) !== 5;
        $error = random_int(1, 99) === 5;
        return new self($delay, $answered, $error);
    }
}
