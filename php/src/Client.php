<?php

declare(strict_types=1);

namespace Wamp;

/**
 * A WAMP v2 session (caller and callee roles) over a WebSocket, driven by
 * a Loop.
 *
 * With a log direction, every message sent or received is also reported
 * to WampObserver as the exact JSON text on the wire, with one exception:
 * see invocationLogText().
 *
 * What user code gets: received messages are decoded with JSON objects and
 * arrays kept apart (Json::decode), and each Details, Options and
 * ArgumentsKw must be a JSON object, whatever its keys look like
 * ({"0":"zero"} is a dict; [] is not one). Callbacks and handlers then get
 * Arguments, ArgumentsKw and Details as plain PHP arrays, with the dicts
 * nested in them turned into PHP arrays too (as json_decode($text, true)
 * gives them): a dict key that looks like an integer is an integer key,
 * and a nested {} is an empty array.
 *
 * Once the session is closing (the client sent ABORT or GOODBYE, or the
 * router did), received messages are still logged but otherwise ignored,
 * apart from the router's GOODBYE that answers leave(); so the first
 * reason for the end is the one $onClose reports.
 */
final class Client
{
    private const SUBPROTOCOL = 'wamp.2.json';
    private const AGENT = 'php-wamp-observer';
    /** How long leave() waits for the router's GOODBYE. */
    private const LEAVE_TIMEOUT = 1.0;
    /** WAMP ids are integers in [1, 2^53]. */
    private const MAX_ID = 9007199254740992;

    private const IDLE = 0;
    private const ESTABLISHING = 1;
    private const JOINED = 2;
    private const CLOSING = 3;
    private const CLOSED = 4;

    private int $state = self::IDLE;
    private ?WebSocket $socket = null;
    private ?int $sessionId = null;
    private int $lastRequest = 0;
    /** @var array<int, PendingCall> by CALL request id */
    private array $calls = [];
    /** @var array<int, PendingRegistration> by REGISTER request id */
    private array $registering = [];
    /** @var array<int, Registration> by registration id */
    private array $registrations = [];
    /** @var array<int, Invocation> unanswered, by INVOCATION request id */
    private array $invocations = [];

    /** @var \Closure(int, array): void */
    private \Closure $onJoin;
    /** @var \Closure(string): void|null */
    private ?\Closure $onClose = null;
    /** Set by leave(): the session end was asked for. */
    private bool $leaving = false;
    /** leave() sent GOODBYE: the router's GOODBYE in reply is awaited. */
    private bool $awaitingGoodbye = false;
    /** @var \Closure(): void|null */
    private ?\Closure $onLeft = null;
    private ?int $leaveTimer = null;
    /**
     * Why the session ended, when known before the transport closes: the
     * first reason only, set when the client decides to close.
     */
    private ?string $closeReason = null;

    public function __construct(
        private Loop $loop,
        private string $url,
        private string $realm,
        private ?string $logDirection = null,
    ) {
        if ($logDirection !== null) {
            // The lines this client logs leave before the loop idles,
            // instead of waiting for the next message (WampObserver
            // batches them).
            $loop->beforeWait([\WampObserver::class, 'flush']);
        }
    }

    /**
     * Connects and joins the realm. $onJoin($sessionId, $welcomeDetails)
     * follows when the router welcomes the session. $onClose($reason) is
     * called once if the session ends other than by leave(): the router
     * refused it (ABORT), said GOODBYE, broke the protocol (the client
     * sent ABORT), or the connection failed or broke. The reason is the
     * first one: a router's reply to the client's ABORT does not replace it.
     *
     * @throws \InvalidArgumentException when the URL is not a ws:// URL
     */
    public function connect(callable $onJoin, ?callable $onClose = null): void
    {
        if ($this->state !== self::IDLE) {
            throw new \LogicException('a Client connects once');
        }
        $this->onJoin = \Closure::fromCallable($onJoin);
        $this->onClose = $onClose === null ? null : \Closure::fromCallable($onClose);
        $this->state = self::ESTABLISHING;
        $this->socket = new WebSocket($this->loop, $this->url, self::SUBPROTOCOL);
        $this->socket->open(
            fn () => $this->hello(),
            fn (string $payload, bool $binary) => $this->received($payload, $binary),
            fn (int $code, string $reason) => $this->transportClosed($code, $reason),
        );
    }

    public function sessionId(): ?int
    {
        return $this->sessionId;
    }

    /**
     * Calls a procedure; returns the CALL's request id.
     *
     * The call ends with $onResult($args, $kwargs, $details) or
     * $onError($errorUri, $args, $kwargs, $details). Progressive results go
     * to $onProgress, and asking for it requests them (receive_progress).
     * A call still pending when the session closes gets neither callback:
     * the $onClose of connect() tells that story; so does an answer that
     * arrives after leave() said GOODBYE. Callbacks get plain PHP arrays
     * (see the class comment).
     */
    public function call(
        string $procedure,
        array $args = [],
        array $options = [],
        ?callable $onResult = null,
        ?callable $onError = null,
        ?callable $onProgress = null,
    ): int {
        $this->requireJoined();
        if ($onProgress !== null) {
            $options['receive_progress'] = true;
        }
        $request = $this->nextRequest();
        $this->calls[$request] = new PendingCall(
            $onResult === null ? null : \Closure::fromCallable($onResult),
            $onError === null ? null : \Closure::fromCallable($onError),
            $onProgress === null ? null : \Closure::fromCallable($onProgress),
        );
        $this->send([MessageType::CALL, $request, (object) $options, $procedure, array_values($args)]);
        return $request;
    }

    /**
     * Registers a procedure; $handler(Invocation) runs for each call of it.
     * $onRegistered($registrationId) or $onError($errorUri, $args,
     * $kwargs, $details) tells how the REGISTER went. Returns its request id.
     * The Invocation carries plain PHP arrays (see the class comment), and
     * its kwargs go back as a dict: yield($invocation->args,
     * $invocation->kwargs) echoes {"0":"zero"} as {"0":"zero"}.
     */
    public function register(
        string $procedure,
        callable $handler,
        ?callable $onRegistered = null,
        ?callable $onError = null,
    ): int {
        $this->requireJoined();
        $request = $this->nextRequest();
        $this->registering[$request] = new PendingRegistration(
            new Registration($procedure, \Closure::fromCallable($handler)),
            $onRegistered === null ? null : \Closure::fromCallable($onRegistered),
            $onError === null ? null : \Closure::fromCallable($onError),
        );
        $this->send([MessageType::REGISTER, $request, new \stdClass(), $procedure]);
        return $request;
    }

    /**
     * Ends the session: GOODBYE, then the router's GOODBYE (waited for at
     * most LEAVE_TIMEOUT), then the connection is closed and $onLeft()
     * called. Calling it again, or after the session ended, is harmless.
     */
    public function leave(?callable $onLeft = null): void
    {
        if ($this->state === self::IDLE || $this->state === self::CLOSED) {
            if ($onLeft !== null) {
                $onLeft();
            }
            return;
        }
        if ($this->leaving) {
            return;
        }
        $this->leaving = true;
        $this->onLeft = $onLeft === null ? null : \Closure::fromCallable($onLeft);
        if ($this->state === self::JOINED) {
            $this->state = self::CLOSING;
            $this->awaitingGoodbye = true;
            $this->send([MessageType::GOODBYE, new \stdClass(), 'wamp.close.close_realm']);
            $this->leaveTimer = $this->loop->addTimer(self::LEAVE_TIMEOUT, fn () => $this->socket->close());
        } elseif ($this->state === self::ESTABLISHING) {
            $this->state = self::CLOSING;
            $this->socket->close();
        }
    }

    private function hello(): void
    {
        // Features are announced only where this client implements them.
        $roles = [
            'caller' => ['features' => ['progressive_call_results' => true, 'call_timeout' => true]],
            'callee' => ['features' => ['call_canceling' => true]],
        ];
        $this->send([MessageType::HELLO, $this->realm, ['roles' => $roles, 'agent' => self::AGENT]]);
    }

    private function received(string $payload, bool $binary): void
    {
        $open = $this->state === self::ESTABLISHING || $this->state === self::JOINED;
        if ($binary) {
            if ($open) {
                $this->abort('binary message on a wamp.2.json connection');
            }
            return;
        }
        try {
            $message = Json::decode($payload);
        } catch (ProtocolViolation $e) {
            // Logged all the same: it did go over the wire.
            $this->log($payload);
            if ($open) {
                $this->abort($e->getMessage());
            }
            return;
        }
        if ($this->logDirection !== null) {
            $this->log($message[0] === MessageType::INVOCATION ? $this->invocationLogText($payload, $message) : $payload);
        }
        if (!$open) {
            $this->receivedWhileClosing($message);
            return;
        }
        try {
            $this->dispatch($message);
        } catch (ProtocolViolation $e) {
            $this->abort($e->getMessage());
        }
    }

    /**
     * The client has decided to end the session (or the router has): only
     * the GOODBYE answering leave()'s is acted on, however it is written;
     * the rest is ignored, so that nothing replaces the first reason.
     */
    private function receivedWhileClosing(array $message): void
    {
        if ($this->state === self::CLOSING && $this->awaitingGoodbye && $message[0] === MessageType::GOODBYE) {
            $this->awaitingGoodbye = false;
            $this->cancelLeaveTimer();
            $this->socket->close();
        }
    }

    /** @throws ProtocolViolation */
    private function dispatch(array $message): void
    {
        if ($this->state === self::ESTABLISHING) {
            match ($message[0]) {
                MessageType::WELCOME => $this->welcomed($message),
                MessageType::ABORT => $this->aborted($message),
                default => throw new ProtocolViolation("message {$message[0]} before WELCOME"),
            };
            return;
        }
        // Unknown types are ignored, so a router may speak a later
        // profile than this client knows.
        match ($message[0]) {
            MessageType::WELCOME => throw new ProtocolViolation('WELCOME in an established session'),
            MessageType::ABORT => $this->aborted($message),
            MessageType::GOODBYE => $this->goodbye($message),
            MessageType::ERROR => $this->errorReceived($message),
            MessageType::RESULT => $this->result($message),
            MessageType::REGISTERED => $this->registered($message),
            MessageType::INVOCATION => $this->invocation($message),
            MessageType::INTERRUPT => $this->interrupt($message),
            default => null,
        };
    }

    /** [WELCOME, Session|id, Details|dict] */
    private function welcomed(array $message): void
    {
        $this->sessionId = Field::id($message, 1);
        $this->state = self::JOINED;
        ($this->onJoin)($this->sessionId, Field::dict($message, 2));
    }

    /** [ABORT, Details|dict, Reason|uri] from a router that was not told to close */
    private function aborted(array $message): void
    {
        $details = Field::dict($message, 1);
        $reason = Field::uri($message, 2);
        $this->closeReason ??= isset($details['message']) && is_string($details['message'])
            ? "$reason: {$details['message']}"
            : $reason;
        $this->state = self::CLOSING;
        $this->socket->close();
    }

    /**
     * [GOODBYE, Details|dict, Reason|uri] in a joined session: the router
     * ends it. (The GOODBYE answering leave() is receivedWhileClosing()'s.)
     */
    private function goodbye(array $message): void
    {
        $reason = Field::uri($message, 2);
        // Acknowledge as the spec asks.
        $this->send([MessageType::GOODBYE, new \stdClass(), 'wamp.close.goodbye_and_out']);
        $this->closeReason ??= "the router closed the session: $reason";
        $this->state = self::CLOSING;
        $this->cancelLeaveTimer();
        $this->socket->close();
    }

    /** [ERROR, REQUEST.Type|int, REQUEST.Request|id, Details|dict, Error|uri, Arguments|list?, ArgumentsKw|dict?] */
    private function errorReceived(array $message): void
    {
        $type = Field::int($message, 1);
        $request = Field::id($message, 2);
        $details = Field::dict($message, 3);
        $error = Field::uri($message, 4);
        $args = Field::args($message, 5);
        $kwargs = Field::kwargs($message, 6);
        if ($type === MessageType::CALL && isset($this->calls[$request])) {
            $call = $this->calls[$request];
            unset($this->calls[$request]);
            if ($call->onError !== null) {
                ($call->onError)($error, $args, $kwargs, $details);
            }
        } elseif ($type === MessageType::REGISTER && isset($this->registering[$request])) {
            $pending = $this->registering[$request];
            unset($this->registering[$request]);
            if ($pending->onError !== null) {
                ($pending->onError)($error, $args, $kwargs, $details);
            }
        }
    }

    /** [RESULT, CALL.Request|id, Details|dict, Arguments|list?, ArgumentsKw|dict?] */
    private function result(array $message): void
    {
        $request = Field::id($message, 1);
        $details = Field::dict($message, 2);
        $args = Field::args($message, 3);
        $kwargs = Field::kwargs($message, 4);
        $call = $this->calls[$request] ?? null;
        if ($call === null) {
            return;
        }
        // Only the final result ends the call.
        if (($details['progress'] ?? false) === true) {
            if ($call->onProgress !== null) {
                ($call->onProgress)($args, $kwargs, $details);
            }
            return;
        }
        unset($this->calls[$request]);
        if ($call->onResult !== null) {
            ($call->onResult)($args, $kwargs, $details);
        }
    }

    /** [REGISTERED, REGISTER.Request|id, Registration|id] */
    private function registered(array $message): void
    {
        $request = Field::id($message, 1);
        $registrationId = Field::id($message, 2);
        $pending = $this->registering[$request] ?? null;
        if ($pending === null) {
            return;
        }
        unset($this->registering[$request]);
        $this->registrations[$registrationId] = $pending->registration;
        if ($pending->onRegistered !== null) {
            ($pending->onRegistered)($registrationId);
        }
    }

    /** [INVOCATION, Request|id, REGISTERED.Registration|id, Details|dict, Arguments|list?, ArgumentsKw|dict?] */
    private function invocation(array $message): void
    {
        $request = Field::id($message, 1);
        $registration = $this->registrations[Field::id($message, 2)] ?? null;
        $details = Field::dict($message, 3);
        $args = Field::args($message, 4);
        $kwargs = Field::kwargs($message, 5);
        if ($registration === null) {
            // The caller must not hang on a registration this client does not know.
            $this->send([MessageType::ERROR, MessageType::INVOCATION, $request, new \stdClass(), 'wamp.error.no_such_registration', []]);
            return;
        }
        $procedure = isset($details['procedure']) && is_string($details['procedure']) ? $details['procedure'] : $registration->procedure;
        $invocation = new Invocation(
            $request,
            $procedure,
            $args,
            $kwargs,
            $details,
            fn (array $answer) => $this->answered($request, $answer),
        );
        $this->invocations[$request] = $invocation;
        try {
            ($registration->handler)($invocation);
        } catch (\Throwable $e) {
            // A failing handler answers its caller instead of taking the
            // whole callee down.
            $invocation->error('wamp.error.runtime_error', [$e->getMessage()]);
        }
    }

    /** [INTERRUPT, INVOCATION.Request|id, Options|dict] */
    private function interrupt(array $message): void
    {
        $request = Field::id($message, 1);
        $options = Field::dict($message, 2);
        $invocation = $this->invocations[$request] ?? null;
        if ($invocation === null) {
            return;
        }
        unset($this->invocations[$request]);
        // "kill" is the spec's default cancel mode.
        $mode = is_string($options['mode'] ?? null) ? $options['mode'] : 'kill';
        $invocation->interrupt($mode);
    }

    private function answered(int $request, array $answer): void
    {
        unset($this->invocations[$request]);
        // After GOODBYE nothing may be sent, so late answers are dropped.
        if ($this->state === self::JOINED) {
            $this->send($answer);
        }
    }

    private function abort(string $why): void
    {
        if ($this->state === self::ESTABLISHING || $this->state === self::JOINED) {
            $this->send([MessageType::ABORT, ['message' => $why], 'wamp.error.protocol_violation']);
        }
        $this->closeReason ??= "protocol violation by the router: $why";
        $this->state = self::CLOSING;
        $this->socket->close();
    }

    private function transportClosed(int $code, string $reason): void
    {
        $this->state = self::CLOSED;
        $this->cancelLeaveTimer();
        // Nothing pending can complete any more.
        $this->calls = [];
        $this->registering = [];
        $this->invocations = [];
        if ($this->leaving) {
            if ($this->onLeft !== null) {
                ($this->onLeft)();
            }
            return;
        }
        if ($this->onClose !== null) {
            ($this->onClose)($this->closeReason ?? trim("connection closed ($code) $reason"));
        }
    }

    private function send(array $message): void
    {
        $text = Json::encode($message);
        $this->log($text);
        $this->socket->send($text);
    }

    private function log(string $text): void
    {
        if ($this->logDirection !== null) {
            \WampObserver::log('wamp', $this->logDirection, $text);
        }
    }

    /**
     * The text logged for a received INVOCATION. Routers name the procedure
     * in INVOCATION.Details only for pattern-based registrations, but the
     * observer needs it to label the call; this client knows it from its
     * registrations, so the logged copy gets details.procedure. The wire
     * message is not changed, and other messages are logged verbatim.
     */
    private function invocationLogText(string $payload, array $message): string
    {
        $details = $message[3] ?? null;
        $registration = is_int($message[2] ?? null) ? ($this->registrations[$message[2]] ?? null) : null;
        if ($registration === null || !$details instanceof \stdClass || property_exists($details, 'procedure')) {
            return $payload;
        }
        // Dicts are decoded as objects, so {} in the copy stays {} when
        // re-encoded. The details are cloned: the message itself goes on
        // to the handler as the router sent it.
        $copy = $message;
        $copy[3] = clone $details;
        $copy[3]->procedure = $registration->procedure;
        try {
            return Json::encode($copy);
        } catch (\JsonException) {
            // A number too large for a float (1e400) decodes to INF and
            // cannot be re-encoded; the wire text is the next best log.
            return $payload;
        }
    }

    private function nextRequest(): int
    {
        // Request ids count up from 1 within the session, as the spec allows.
        $this->lastRequest = $this->lastRequest >= self::MAX_ID ? 1 : $this->lastRequest + 1;
        return $this->lastRequest;
    }

    private function requireJoined(): void
    {
        if ($this->state !== self::JOINED) {
            throw new \LogicException('the session is not joined');
        }
    }

    private function cancelLeaveTimer(): void
    {
        if ($this->leaveTimer !== null) {
            $this->loop->cancelTimer($this->leaveTimer);
            $this->leaveTimer = null;
        }
    }
}
