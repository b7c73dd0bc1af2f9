<?php

declare(strict_types=1);

namespace Wamp;

/**
 * One RFC 6455 frame, and the encoder for frames. Pure: no I/O, so framing
 * is testable byte for byte.
 */
final class Frame
{
    public const CONTINUATION = 0x0;
    public const TEXT = 0x1;
    public const BINARY = 0x2;
    public const CLOSE = 0x8;
    public const PING = 0x9;
    public const PONG = 0xA;

    public function __construct(
        public bool $fin,
        public int $opcode,
        public string $payload,
    ) {
    }

    public function isControl(): bool
    {
        return ($this->opcode & 0x8) !== 0;
    }

    /**
     * Encodes one frame. Clients must mask every frame (RFC 6455 §5.3) with
     * a fresh unpredictable key; $maskKey exists so tests can pin it.
     */
    public static function encode(
        string $payload,
        int $opcode,
        bool $mask = true,
        ?string $maskKey = null,
        bool $fin = true,
    ): string {
        if ($opcode < 0 || $opcode > 0xF) {
            throw new \InvalidArgumentException("invalid opcode $opcode");
        }
        if ($maskKey !== null && strlen($maskKey) !== 4) {
            throw new \InvalidArgumentException('a mask key is 4 bytes');
        }
        $length = strlen($payload);
        $head = chr(($fin ? 0x80 : 0) | $opcode);
        $maskBit = $mask ? 0x80 : 0;
        if ($length < 126) {
            $head .= chr($maskBit | $length);
        } elseif ($length <= 0xFFFF) {
            $head .= chr($maskBit | 126) . pack('n', $length);
        } else {
            $head .= chr($maskBit | 127) . pack('J', $length);
        }
        if (!$mask) {
            return $head . $payload;
        }
        $maskKey ??= random_bytes(4);
        return $head . $maskKey . self::applyMask($payload, $maskKey);
    }

    /** Masking is its own inverse: the same call masks and unmasks. */
    public static function applyMask(string $payload, string $maskKey): string
    {
        $length = strlen($payload);
        if ($length === 0) {
            return '';
        }
        // XOR of two strings stops at the shorter one, so a key repeated
        // past the end needs no trimming.
        return $payload ^ str_repeat($maskKey, intdiv($length + 3, 4));
    }
}
