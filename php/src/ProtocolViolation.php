<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The router sent something WAMP does not allow; the session is aborted
 * with wamp.error.protocol_violation.
 */
final class ProtocolViolation extends \RuntimeException
{
}
