<?php

declare(strict_types=1);

namespace Wamp;

/**
 * Joins fragmented data frames into messages (RFC 6455 §5.4): a TEXT or
 * BINARY frame without FIN, then CONTINUATION frames up to one with FIN.
 * Control frames may arrive between fragments and are not its concern.
 */
final class MessageAssembler
{
    private ?int $opcode = null;
    private string $fragments = '';

    public function __construct(private int $maxMessage)
    {
    }

    /**
     * Takes one data frame; returns the whole message as a final frame
     * once complete, else null.
     *
     * @throws ProtocolError
     */
    public function add(Frame $frame): ?Frame
    {
        if ($frame->opcode === Frame::CONTINUATION) {
            if ($this->opcode === null) {
                throw new ProtocolError('continuation frame without a message to continue');
            }
        } elseif ($this->opcode !== null) {
            throw new ProtocolError('new message started before the fragmented one ended');
        } elseif ($frame->fin) {
            // The common case: a message in one frame needs no copying.
            $this->checkSize(strlen($frame->payload));
            return $this->complete($frame->opcode, $frame->payload);
        } else {
            $this->opcode = $frame->opcode;
        }

        $this->checkSize(strlen($this->fragments) + strlen($frame->payload));
        $this->fragments .= $frame->payload;
        if (!$frame->fin) {
            return null;
        }
        $opcode = $this->opcode;
        $payload = $this->fragments;
        $this->opcode = null;
        $this->fragments = '';
        return $this->complete($opcode, $payload);
    }

    /** @throws ProtocolError */
    private function checkSize(int $bytes): void
    {
        if ($bytes > $this->maxMessage) {
            throw new ProtocolError("message exceeds the limit of {$this->maxMessage} bytes", ProtocolError::MESSAGE_TOO_BIG);
        }
    }

    /** @throws ProtocolError */
    private function complete(int $opcode, string $payload): Frame
    {
        // Text must be UTF-8 (RFC 6455 §8.1); the empty pattern with /u
        // fails exactly on invalid UTF-8.
        if ($opcode === Frame::TEXT && preg_match('//u', $payload) !== 1) {
            throw new ProtocolError('text message is not valid UTF-8', ProtocolError::INVALID_PAYLOAD);
        }
        return new Frame(true, $opcode, $payload);
    }
}
