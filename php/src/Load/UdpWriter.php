<?php

declare(strict_types=1);

namespace Wamp\Load;

use Wamp\Loop;

/**
 * The original tool's synthetic writer: no router, it only logs what a
 * WAMP v1 callee would have seen (CALL, then CALLRESULT, CALLERROR or
 * nothing) to the observer over UDP, timed like HelloCallee's answers.
 */
final class UdpWriter
{
    /** WAMP v1 message codes. */
    private const CALL = 2;
    private const CALLRESULT = 3;
    private const CALLERROR = 4;

    /** Pause between calls, as in the original tool. */
    private const PAUSE = 0.0025;

    private int $calls = 0;
    private int $answered = 0;
    private int $errors = 0;
    private int $unanswered = 0;
    private bool $inHand = false;
    private bool $stopping = false;
    private bool $finished = false;
    private ?int $pause = null;
    /** @var \Closure(): void */
    private \Closure $onDone;

    public function __construct(
        private Loop $loop,
        private ?int $limit,
    ) {
        // Lines leave before the loop waits (WampObserver batches them).
        $loop->beforeWait([\WampObserver::class, 'flush']);
    }

    /** Starts writing; $onDone() follows once stopped or $limit calls made. */
    public function start(callable $onDone): void
    {
        $this->onDone = \Closure::fromCallable($onDone);
        $this->next();
    }

    /**
     * Stops starting calls. The call in hand still gets its answer line,
     * so the receiver never sees half a call.
     */
    public function stop(): void
    {
        $this->stopping = true;
        if (!$this->inHand) {
            $this->finish();
        }
    }

    public function summary(float $seconds): string
    {
        return sprintf(
            'writer --udp: %d calls, %d answered, %d errors, %d unanswered in %.1fs',
            $this->calls,
            $this->answered,
            $this->errors,
            $this->unanswered,
            $seconds,
        );
    }

    private function next(): void
    {
        $this->pause = null;
        $this->calls++;
        $this->inHand = true;
        $call = $this->calls;
        // The receiver matches answers to calls by this id, so it must be
        // unique per call, not just per process.
        $id = bin2hex(random_bytes(8));
        $procedure = 'hello' . random_int(1, HelloCallee::PROCEDURES);
        self::log([self::CALL, $id, $procedure, ['msg' => "hello world $call details"]]);
        $plan = ReplyPlan::draw();
        $this->loop->addTimer($plan->delay, fn () => $this->answer($id, $call, $plan));
    }

    private function answer(string $id, int $call, ReplyPlan $plan): void
    {
        if (!$plan->answered) {
            $this->unanswered++;
        } elseif ($plan->error) {
            $this->errors++;
            self::log([self::CALLERROR, $id, 'app.error.hello', "hello world $call error details"]);
        } else {
            $this->answered++;
            self::log([self::CALLRESULT, $id, ['msg' => "hello world $call reply details"]]);
        }
        $this->inHand = false;
        if ($this->stopping || ($this->limit !== null && $this->calls >= $this->limit)) {
            $this->finish();
            return;
        }
        $this->pause = $this->loop->addTimer(self::PAUSE, fn () => $this->next());
    }

    private function finish(): void
    {
        if ($this->finished) {
            return;
        }
        $this->finished = true;
        if ($this->pause !== null) {
            $this->loop->cancelTimer($this->pause);
            $this->pause = null;
        }
        ($this->onDone)();
    }

    private static function log(array $message): void
    {
        \WampObserver::log('wamp', 'in', json_encode($message, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR));
    }
}
