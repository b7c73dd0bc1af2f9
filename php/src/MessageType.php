<?php

declare(strict_types=1);

namespace Wamp;

/**
 * The WAMP v2 message codes the client uses: the basic profile's, plus
 * INTERRUPT from the advanced profile's call canceling.
 */
final class MessageType
{
    public const HELLO = 1;
    public const WELCOME = 2;
    public const ABORT = 3;
    public const GOODBYE = 6;
    public const ERROR = 8;
    public const CALL = 48;
    public const RESULT = 50;
    public const REGISTER = 64;
    public const REGISTERED = 65;
    public const INVOCATION = 68;
    public const INTERRUPT = 69;
    public const YIELD = 70;

    private function __construct()
    {
    }
}
