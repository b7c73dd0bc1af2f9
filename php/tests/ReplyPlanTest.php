<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Load\ReplyPlan;

final class ReplyPlanTest extends TestCase
{
    public function testFollowsTheOriginalDistribution(): void
    {
        $draws = 30000;
        $delayed = $unanswered = $errors = 0;
        for ($i = 0; $i < $draws; $i++) {
            $plan = ReplyPlan::draw();
            $base = $plan->delay >= 0.3 ? $plan->delay - 0.3 : $plan->delay;
            self::assertEqualsWithDelta(0.0075, $base, 0.0025 + 1e-9);
            $delayed += $plan->delay >= 0.3 ? 1 : 0;
            $unanswered += $plan->answered ? 0 : 1;
            $errors += $plan->error ? 1 : 0;
        }
        // Margins of about seven standard deviations: a failure is a bug.
        self::assertEqualsWithDelta(1 / 9, $delayed / $draws, 0.013);
        self::assertEqualsWithDelta(1 / 9, $unanswered / $draws, 0.013);
        self::assertEqualsWithDelta(1 / 99, $errors / $draws, 0.004);
    }
}
