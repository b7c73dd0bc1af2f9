<?php

declare(strict_types=1);

namespace Wamp\Load;

use Wamp\Client;
use Wamp\Loop;

/**
 * The load writer: calls a random hello1..hello9, one call at a time, with
 * a short pause between the end of one call and the start of the next.
 */
final class CallWriter
{
    /** Pause between calls, as in the original tool. */
    private const PAUSE = 0.0025;
    /** The CALL timeout option's default, in milliseconds, the original tool's deadline. */
    public const CALL_TIMEOUT_MS = 300;
    /** How long stop() waits for the call in hand. */
    private const DRAIN_TIMEOUT = 1.5;

    private int $calls = 0;
    private int $results = 0;
    private int $errors = 0;
    private int $timeouts = 0;
    private bool $inHand = false;
    private bool $stopping = false;
    private bool $finished = false;
    /** The pause before the next call, or the drain deadline while stopping. */
    private ?int $timer = null;
    /** @var \Closure(): void */
    private \Closure $onDone;

    public function __construct(
        private Loop $loop,
        private Client $client,
        private ?int $limit,
        /** The CALL timeout option, in milliseconds: the dealer times calls out. */
        private int $timeoutMs = self::CALL_TIMEOUT_MS,
    ) {
    }

    /**
     * Starts calling on a joined session. $onDone() follows once the
     * writer is done: stopped, or $limit calls made.
     */
    public function start(callable $onDone): void
    {
        $this->onDone = \Closure::fromCallable($onDone);
        $this->next();
    }

    /** Stops starting calls; the call in hand gets DRAIN_TIMEOUT to end. */
    public function stop(): void
    {
        if ($this->stopping || $this->finished) {
            return;
        }
        $this->stopping = true;
        if (!$this->inHand) {
            $this->finish();
            return;
        }
        $this->timer = $this->loop->addTimer(self::DRAIN_TIMEOUT, fn () => $this->finish());
    }

    public function summary(float $seconds): string
    {
        return sprintf(
            'writer: %d calls, %d results, %d errors, %d timeouts in %.1fs',
            $this->calls,
            $this->results,
            $this->errors,
            $this->timeouts,
            $seconds,
        );
    }

    private function next(): void
    {
        $this->timer = null;
        $this->calls++;
        $this->inHand = true;
        $this->client->call(
            'hello' . random_int(1, HelloCallee::PROCEDURES),
            ["hello world {$this->calls}"],
            ['timeout' => $this->timeoutMs],
            function (): void {
                $this->results++;
                $this->ended();
            },
            function (string $error): void {
                if ($error === 'wamp.error.timeout') {
                    $this->timeouts++;
                } else {
                    $this->errors++;
                }
                $this->ended();
            },
        );
    }

    private function ended(): void
    {
        $this->inHand = false;
        if ($this->stopping || ($this->limit !== null && $this->calls >= $this->limit)) {
            $this->finish();
            return;
        }
        $this->timer = $this->loop->addTimer(self::PAUSE, fn () => $this->next());
    }

    private function finish(): void
    {
        if ($this->finished) {
            return;
        }
        $this->finished = true;
        if ($this->timer !== null) {
            $this->loop->cancelTimer($this->timer);
            $this->timer = null;
        }
        ($this->onDone)();
    }
}
