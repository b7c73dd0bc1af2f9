<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The peer broke RFC 6455; the connection must be closed with closeCode.
 */
final class ProtocolError extends \RuntimeException
{
    public const PROTOCOL_ERROR = 1002;
    public const INVALID_PAYLOAD = 1007;
    public const MESSAGE_TOO_BIG = 1009;

    public function __construct(string $message, public int $closeCode = self::PROTOCOL_ERROR)
    {
        parent::__construct($message);
    }
}
