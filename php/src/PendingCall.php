<?php

declare(strict_types=1);

namespace Wamp;

/**
 * What to do when a CALL is answered. Each callback is optional.
 */
final class PendingCall
{
    /**
     * @param \Closure(array, array, array): void|null         $onResult   args, kwargs, details
     * @param \Closure(string, array, array, array): void|null $onError    error URI, args, kwargs, details
     * @param \Closure(array, array, array): void|null         $onProgress progressive results
     */
    public function __construct(
        public ?\Closure $onResult,
        public ?\Closure $onError,
        public ?\Closure $onProgress,
    ) {
    }
}
