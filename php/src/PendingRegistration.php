<?php

declare(strict_types=1);

namespace Wamp;

/**
 * A REGISTER waiting for REGISTERED or ERROR.
 */
final class PendingRegistration
{
    /**
     * @param \Closure(int): void|null                         $onRegistered the registration id
     * @param \Closure(string, array, array, array): void|null $onError      error URI, args, kwargs, details
     */
    public function __construct(
        public Registration $registration,
        public ?\Closure $onRegistered,
        public ?\Closure $onError,
    ) {
    }
}
