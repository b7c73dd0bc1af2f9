<?php

declare(strict_types=1);

namespace Wamp;

/**
 * A single-threaded event loop: readiness of streams (stream_select),
 * one-shot timers and POSIX signals.
 *
 * run() returns when stop() is called or when nothing is left to wait for
 * (no stream and no timer); signal handlers alone do not keep it running.
 */
final class Loop
{
    /**
     * A signal may land just before the select call, after the loop last
     * looked for pending signals; it is then only seen when select returns.
     * While signal handlers are installed, select never waits longer than
     * this, which bounds that (rare) delay.
     */
    private const MAX_WAIT_WITH_SIGNALS = 0.5;

    /** Rebuild the timer heap once this many cancelled entries sit in it. */
    private const COMPACT_THRESHOLD = 1024;

    /** @var array<int, resource> */
    private array $readStreams = [];
    /** @var array<int, callable(resource): void> */
    private array $readCallbacks = [];
    /** @var array<int, resource> */
    private array $writeStreams = [];
    /** @var array<int, callable(resource): void> */
    private array $writeCallbacks = [];

    /**
     * Min-heap of [due, id]. Cancelling only forgets the callback; the heap
     * entry is skipped when it surfaces (lazy deletion), so both add and
     * cancel stay O(log n).
     */
    private \SplMinHeap $timerHeap;
    /** @var array<int, array{float, callable(): void}> live timers by id */
    private array $timers = [];
    private int $nextTimerId = 1;
    private int $cancelledInHeap = 0;

    /** @var array<int, callable(int): void> */
    private array $signalCallbacks = [];
    /** @var list<int> signals caught but not yet dispatched */
    private array $pendingSignals = [];

    /**
     * A socket pair that keeps stream_select usable when no stream is
     * registered (a loop of timers only): stream_select refuses empty sets.
     * Nothing is ever written to it; only the first end is selected on, and
     * the second stays open so the first never reads EOF.
     *
     * @var array{resource, resource}|null
     */
    private ?array $idlePair = null;

    private bool $running = false;

    /** @var list<callable(): void> called each time before the loop waits */
    private array $beforeWait = [];

    public function __construct()
    {
        $this->timerHeap = new \SplMinHeap();
    }

    /**
     * Calls $callback each time the loop is about to wait for streams or
     * timers: work that batches (such as WampObserver's lines) is done
     * then rather than held while the loop idles.
     */
    public function beforeWait(callable $callback): void
    {
        $this->beforeWait[] = $callback;
    }

    /** @param resource $stream */
    public function addReadStream($stream, callable $callback): void
    {
        $id = (int) $stream;
        $this->readStreams[$id] = $stream;
        $this->readCallbacks[$id] = $callback;
    }

    /** @param resource $stream */
    public function removeReadStream($stream): void
    {
        $id = (int) $stream;
        unset($this->readStreams[$id], $this->readCallbacks[$id]);
    }

    /** @param resource $stream */
    public function addWriteStream($stream, callable $callback): void
    {
        $id = (int) $stream;
        $this->writeStreams[$id] = $stream;
        $this->writeCallbacks[$id] = $callback;
    }

    /** @param resource $stream */
    public function removeWriteStream($stream): void
    {
        $id = (int) $stream;
        unset($this->writeStreams[$id], $this->writeCallbacks[$id]);
    }

    /** Calls $callback once, $seconds from now. Returns an id for cancelTimer(). */
    public function addTimer(float $seconds, callable $callback): int
    {
        $id = $this->nextTimerId++;
        $due = self::now() + max(0.0, $seconds);
        $this->timers[$id] = [$due, $callback];
        $this->timerHeap->insert([$due, $id]);
        return $id;
    }

    /** Cancelling a timer that already fired or was cancelled is a no-op. */
    public function cancelTimer(int $id): void
    {
        if (!isset($this->timers[$id])) {
            return;
        }
        unset($this->timers[$id]);
        $this->cancelledInHeap++;
        if ($this->cancelledInHeap >= self::COMPACT_THRESHOLD && $this->cancelledInHeap > count($this->timers)) {
            $this->compactTimers();
        }
    }

    /**
     * Calls $callback($signo) from the loop when the process gets $signo.
     * The callback runs between loop steps, never in the middle of other
     * code, so it may safely use any object the loop drives.
     */
    public function onSignal(int $signo, callable $callback): void
    {
        pcntl_async_signals(true);
        $this->signalCallbacks[$signo] = $callback;
        pcntl_signal($signo, function (int $signo): void {
            $this->pendingSignals[] = $signo;
        });
    }

    public function stop(): void
    {
        $this->running = false;
    }

    public function run(): void
    {
        $this->running = true;
        while ($this->running) {
            $this->dispatchSignals();
            if (!$this->running || ($this->readStreams === [] && $this->writeStreams === [] && $this->timers === [])) {
                break;
            }
            $this->waitForStreams($this->waitTimeout());
            $this->fireDueTimers();
        }
        $this->running = false;
    }

    /** Seconds select may sleep, or null to sleep until a stream is ready. */
    private function waitTimeout(): ?float
    {
        if ($this->pendingSignals !== []) {
            return 0.0;
        }
        $timeout = null;
        $next = $this->nextDue();
        if ($next !== null) {
            $timeout = max(0.0, $next - self::now());
        }
        if ($this->signalCallbacks !== []) {
            $timeout = min($timeout ?? self::MAX_WAIT_WITH_SIGNALS, self::MAX_WAIT_WITH_SIGNALS);
        }
        return $timeout;
    }

    private function waitForStreams(?float $timeout): void
    {
        foreach ($this->beforeWait as $callback) {
            $callback();
        }
        $read = $this->readStreams;
        $write = $this->writeStreams;
        if ($read === [] && $write === []) {
            $read = [$this->idleStream()];
        }
        $except = null;
        $seconds = $timeout === null ? null : (int) $timeout;
        $micros = $timeout === null ? null : (int) (($timeout - (int) $timeout) * 1e6);
        // A signal interrupts select (EINTR) with a warning; that is an
        // expected wake-up, not an error.
        $ready = @stream_select($read, $write, $except, $seconds, $micros);
        if ($ready === false || $ready === 0) {
            return;
        }
        foreach ($read as $stream) {
            // An earlier callback in this round may have removed the stream.
            $callback = $this->readCallbacks[(int) $stream] ?? null;
            if ($callback !== null) {
                $callback($stream);
            }
        }
        foreach ($write as $stream) {
            $callback = $this->writeCallbacks[(int) $stream] ?? null;
            if ($callback !== null) {
                $callback($stream);
            }
        }
    }

    private function fireDueTimers(): void
    {
        // Timers added by callbacks are due strictly later than this
        // snapshot, so a callback re-arming itself with 0 s cannot starve
        // the streams.
        $now = self::now();
        while (!$this->timerHeap->isEmpty()) {
            [$due, $id] = $this->timerHeap->top();
            if (!isset($this->timers[$id])) {
                $this->timerHeap->extract();
                $this->cancelledInHeap--;
                continue;
            }
            if ($due > $now) {
                return;
            }
            $this->timerHeap->extract();
            $callback = $this->timers[$id][1];
            unset($this->timers[$id]);
            $callback();
        }
    }

    private function nextDue(): ?float
    {
        while (!$this->timerHeap->isEmpty()) {
            [$due, $id] = $this->timerHeap->top();
            if (isset($this->timers[$id])) {
                return $due;
            }
            $this->timerHeap->extract();
            $this->cancelledInHeap--;
        }
        return null;
    }

    private function dispatchSignals(): void
    {
        // array_shift runs as one step, so a handler appending concurrently
        // (async signals) cannot lose an entry.
        while ($this->pendingSignals !== []) {
            $signo = array_shift($this->pendingSignals);
            $callback = $this->signalCallbacks[$signo] ?? null;
            if ($callback !== null) {
                $callback($signo);
            }
        }
    }

    private function compactTimers(): void
    {
        $heap = new \SplMinHeap();
        foreach ($this->timers as $id => [$due]) {
            $heap->insert([$due, $id]);
        }
        $this->timerHeap = $heap;
        $this->cancelledInHeap = 0;
    }

    /** @return resource */
    private function idleStream()
    {
        if ($this->idlePair === null) {
            $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
            if ($pair === false) {
                throw new \RuntimeException('cannot create the loop\'s idle socket pair');
            }
            $this->idlePair = $pair;
        }
        return $this->idlePair[0];
    }

    private static function now(): float
    {
        return hrtime(true) / 1e9;
    }
}
