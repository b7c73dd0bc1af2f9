<?php

declare(strict_types=1);

/*
 * What one WampObserver::log() call costs the PHP application, for the
 * original tool's TCP class and for ours (UDP, batched), each with a fast
 * receiver up and with nothing listening:
 *
 *   php php/bench/observer-cost.php TCP_UP UDP_UP TCP_DOWN UDP_DOWN [CALLS] [ROUNDS]
 *
 * Each argument is host:port: a TCP and a UDP receiver that read as fast
 * as they can, and a TCP and a UDP port where nothing listens (make bench
 * starts them: go run ./cmd/wampload bench -only php). Each round times
 * CALLS log() calls of a typical CALL line for each of the four, in turn;
 * it prints the best round of each in ns per call, one line each:
 *
 *   original tcp up 1012
 */

require __DIR__ . '/../WampObserver.php';
require __DIR__ . '/OriginalTcpObserver.php';

[, $tcpUp, $udpUp, $tcpDown, $udpDown] = $argv + [4 => null];
if ($udpDown === null) {
    fwrite(STDERR, "usage: observer-cost.php TCP_UP UDP_UP TCP_DOWN UDP_DOWN [CALLS] [ROUNDS]\n");
    exit(2);
}
$calls = (int) ($argv[5] ?? 200000);
$rounds = (int) ($argv[6] ?? 5);

$message = '[48,7152837654321,{"timeout":300},"hello3",["hello world 3"]]';

$cases = [
    'original tcp up' => [false, $tcpUp],
    'original tcp down' => [false, $tcpDown],
    'ours udp up' => [true, $udpUp],
    'ours udp down' => [true, $udpDown],
];
$best = array_fill_keys(array_keys($cases), PHP_INT_MAX);
for ($round = 0; $round < $rounds; $round++) {
    foreach ($cases as $name => [$ours, $addr]) {
        $ns = $ours ? timeOurs($addr, $message, $calls) : timeOriginal($addr, $message, $calls);
        $best[$name] = min($best[$name], intdiv($ns, $calls));
    }
}
foreach ($best as $name => $ns) {
    echo "$name $ns\n";
}

/** Nanoseconds for $calls calls of the original class's log(), after one to connect. */
function timeOriginal(string $addr, string $message, int $calls): int
{
    [OriginalTcpObserver::$address, $port] = explode(':', $addr);
    OriginalTcpObserver::$port = (int) $port;
    OriginalTcpObserver::reset();
    OriginalTcpObserver::log('wamp', 'out', $message);
    $start = hrtime(true);
    for ($i = 0; $i < $calls; $i++) {
        OriginalTcpObserver::log('wamp', 'out', $message);
    }
    return hrtime(true) - $start;
}

/**
 * Nanoseconds for $calls calls of our log(), after two lines sent apart:
 * where nothing listens, the kernel's answer to the first fails the
 * second, as it would within a second of a real application's start.
 */
function timeOurs(string $addr, string $message, int $calls): int
{
    WampObserver::configure($addr);
    WampObserver::log('wamp', 'out', $message);
    WampObserver::log('wamp', 'out', $message);
    WampObserver::flush();
    $start = hrtime(true);
    for ($i = 0; $i < $calls; $i++) {
        WampObserver::log('wamp', 'out', $message);
    }
    $ns = hrtime(true) - $start;
    WampObserver::flush();
    return $ns;
}
