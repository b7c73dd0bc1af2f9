<?php

declare(strict_types=1);

namespace Wamp;

/**
 * Incremental frame parser: feed it bytes as they arrive, get back the
 * frames they complete. A frame split across reads waits in the buffer.
 *
 * It enforces the per-frame rules of RFC 6455 §5; reassembling fragmented
 * messages is MessageAssembler's job.
 */
final class FrameDecoder
{
    private string $buffer = '';

    /**
     * @param int  $maxPayload largest frame payload accepted, checked from
     *                         the header before the payload is buffered
     * @param bool $masked     whether frames must be masked: false for a
     *                         client reading a server, true for the reverse
     */
    public function __construct(
        private int $maxPayload,
        private bool $masked = false,
    ) {
    }

    /**
     * @return list<Frame> the frames completed by $bytes, in order
     * @throws ProtocolError
     */
    public function feed(string $bytes): array
    {
        $this->buffer .= $bytes;
        $frames = [];
        $offset = 0;
        while (($frame = $this->parseAt($offset)) !== null) {
            $frames[] = $frame;
        }
        // Drop consumed bytes once per feed, not once per frame.
        if ($offset > 0) {
            $this->buffer = substr($this->buffer, $offset);
        }
        return $frames;
    }

    /**
     * Parses the frame starting at $offset and advances $offset past it,
     * or returns null when the buffer does not hold all of it yet.
     *
     * @throws ProtocolError
     */
    private function parseAt(int &$offset): ?Frame
    {
        $available = strlen($this->buffer) - $offset;
        if ($available < 2) {
            return null;
        }
        $first = ord($this->buffer[$offset]);
        $second = ord($this->buffer[$offset + 1]);
        $fin = ($first & 0x80) !== 0;
        $opcode = $first & 0x0F;
        $this->checkHeader($first, $second, $fin, $opcode);

        $length = $second & 0x7F;
        $headerLength = 2;
        if ($length === 126) {
            $headerLength = 4;
            if ($available < $headerLength) {
                return null;
            }
            $length = unpack('n', $this->buffer, $offset + 2)[1];
        } elseif ($length === 127) {
            $headerLength = 10;
            if ($available < $headerLength) {
                return null;
            }
            $length = unpack('J', $this->buffer, $offset + 2)[1];
            // The most significant bit must be 0 (RFC 6455 §5.2); unpack
            // reads it as a negative number.
            if ($length < 0) {
                throw new ProtocolError('frame length has its most significant bit set');
            }
        }
        if ($opcode >= Frame::CLOSE && $length > 125) {
            throw new ProtocolError('control frame payload longer than 125 bytes');
        }
        if ($length > $this->maxPayload) {
            throw new ProtocolError("frame of $length bytes exceeds the limit of {$this->maxPayload}", ProtocolError::MESSAGE_TOO_BIG);
        }

        $maskLength = $this->masked ? 4 : 0;
        if ($available < $headerLength + $maskLength + $length) {
            return null;
        }
        $payload = substr($this->buffer, $offset + $headerLength + $maskLength, $length);
        if ($this->masked) {
            $payload = Frame::applyMask($payload, substr($this->buffer, $offset + $headerLength, 4));
        }
        $headerLength += $maskLength;
        $offset += $headerLength + $length;
        return new Frame($fin, $opcode, $payload);
    }

    /** @throws ProtocolError */
    private function checkHeader(int $first, int $second, bool $fin, int $opcode): void
    {
        // No extension was negotiated, so no reserved bit may be set.
        if (($first & 0x70) !== 0) {
            throw new ProtocolError('reserved bits set without a negotiated extension');
        }
        if ((($second & 0x80) !== 0) !== $this->masked) {
            throw new ProtocolError($this->masked ? 'unmasked client frame' : 'masked server frame');
        }
        $known = $opcode <= Frame::BINARY || ($opcode >= Frame::CLOSE && $opcode <= Frame::PONG);
        if (!$known) {
            throw new ProtocolError(sprintf('reserved opcode 0x%X', $opcode));
        }
        if ($opcode >= Frame::CLOSE && !$fin) {
            throw new ProtocolError('fragmented control frame');
        }
    }
}
