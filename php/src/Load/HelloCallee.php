<?php

declare(strict_types=1);

namespace Wamp\Load;

use Wamp\Client;
use Wamp\Invocation;
use Wamp\Loop;

/**
 * Serves hello1..hello9 like the original tool's callee: each invocation
 * is answered after a ReplyPlan delay (a loop timer, so one process serves
 * many callers at once), with a result or an error, or never.
 */
final class HelloCallee
{
    public const PROCEDURES = 9;

    private int $registered = 0;
    private int $invocations = 0;
    private int $results = 0;
    private int $errors = 0;
    private int $interrupted = 0;

    public function __construct(
        private Loop $loop,
        private Client $client,
    ) {
    }

    /**
     * Registers every procedure; then $onReady(), or $onFailure($why) on
     * the first refused registration.
     */
    public function registerAll(callable $onReady, callable $onFailure): void
    {
        for ($n = 1; $n <= self::PROCEDURES; $n++) {
            $procedure = "hello$n";
            $this->client->register(
                $procedure,
                fn (Invocation $invocation) => $this->handle($invocation),
                function () use ($onReady): void {
                    if (++$this->registered === self::PROCEDURES) {
                        $onReady();
                    }
                },
                fn (string $error) => $onFailure("cannot register $procedure: $error"),
            );
        }
    }

    public function summary(float $seconds): string
    {
        // Every invocation ends up in exactly one column; "unanswered" are
        // those never answered and never interrupted (including any still
        // waiting at exit).
        $unanswered = $this->invocations - $this->results - $this->errors - $this->interrupted;
        return sprintf(
            'callee: %d invocations, %d results, %d errors, %d unanswered, %d interrupted in %.1fs',
            $this->invocations,
            $this->results,
            $this->errors,
            $unanswered,
            $this->interrupted,
            $seconds,
        );
    }

    private function handle(Invocation $invocation): void
    {
        $this->invocations++;
        $plan = ReplyPlan::draw();
        $timer = null;
        if ($plan->answered) {
            $timer = $this->loop->addTimer($plan->delay, fn () => $this->answer($invocation, $plan));
        }
        // The router gave up on the call (its timeout, or the caller
        // cancelled): no answer will be read, so none is sent.
        $invocation->onInterrupt(function () use ($timer): void {
            if ($timer !== null) {
                $this->loop->cancelTimer($timer);
            }
            $this->interrupted++;
        });
    }

    private function answer(Invocation $invocation, ReplyPlan $plan): void
    {
        if ($plan->error) {
            $this->errors++;
            $invocation->error('app.error.hello');
            return;
        }
        $this->results++;
        $invocation->yield(["Hello from {$invocation->procedure}"]);
    }
}
