<?php

declare(strict_types=1);

namespace Wamp;

/**
 * A procedure this client registered, and the handler of its invocations.
 */
final class Registration
{
    /** @param \Closure(Invocation): void $handler */
    public function __construct(
        public string $procedure,
        public \Closure $handler,
    ) {
    }
}
