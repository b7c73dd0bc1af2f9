<?php

declare(strict_types=1);

namespace Wamp;

/**
 * One call of a registered procedure, as the callee sees it, and the way
 * to answer it. It is answered at most once: a second answer, or any
 * answer after the router interrupted it, is not sent.
 */
final class Invocation
{
    private bool $interrupted = false;
    private bool $finished = false;
    /** @var \Closure(string): void|null */
    private ?\Closure $onInterrupt = null;

    /**
     * @param list<mixed>            $args
     * @param array<string, mixed>   $kwargs
     * @param array<string, mixed>   $details INVOCATION.Details as the router sent them
     * @param \Closure(array): void  $reply   sends the answer and forgets the invocation
     */
    public function __construct(
        public int $request,
        public string $procedure,
        public array $args,
        public array $kwargs,
        public array $details,
        private \Closure $reply,
    ) {
    }

    /** Answers with a result: YIELD. */
    public function yield(array $args = [], array $kwargs = []): void
    {
        $this->answer(self::withKwargs([MessageType::YIELD, $this->request, new \stdClass(), array_values($args)], $kwargs));
    }

    /** Answers with an error: ERROR for the INVOCATION. */
    public function error(string $uri, array $args = [], array $kwargs = []): void
    {
        $this->answer(self::withKwargs(
            [MessageType::ERROR, MessageType::INVOCATION, $this->request, new \stdClass(), $uri, array_values($args)],
            $kwargs,
        ));
    }

    public function isInterrupted(): bool
    {
        return $this->interrupted;
    }

    /** $callback($mode) runs if the router interrupts this invocation. */
    public function onInterrupt(callable $callback): void
    {
        $this->onInterrupt = \Closure::fromCallable($callback);
    }

    /**
     * Called by the client on INTERRUPT. In "kill" mode the router waits
     * for the callee to confirm, so that answer is owed even though the
     * handler may never answer; "killnowait" wants nothing back.
     *
     * @internal
     */
    public function interrupt(string $mode): void
    {
        if ($this->finished || $this->interrupted) {
            return;
        }
        $this->interrupted = true;
        if ($this->onInterrupt !== null) {
            ($this->onInterrupt)($mode);
        }
        $this->finished = true;
        if ($mode === 'kill') {
            ($this->reply)([MessageType::ERROR, MessageType::INVOCATION, $this->request, new \stdClass(), 'wamp.error.canceled', []]);
        }
    }

    private function answer(array $message): void
    {
        if ($this->finished || $this->interrupted) {
            return;
        }
        $this->finished = true;
        ($this->reply)($message);
    }

    /** Keyword arguments go on the wire only when there are some. */
    private static function withKwargs(array $message, array $kwargs): array
    {
        if ($kwargs !== []) {
            $message[] = (object) $kwargs;
        }
        return $message;
    }
}
