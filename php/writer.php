<?php

declare(strict_types=1);

/**
 * The load writer. Run many at once:
 *
 *     for run in {1..100}; do php php/writer.php & done
 *
 * By default it is a WAMP caller calling hello1..hello9 through the router
 * (see Wamp\Load\CallWriter), logging its side with direction "out".
 * With --udp it needs no router: it logs the original tool's synthetic
 * WAMP v1 calls straight to the observer (see Wamp\Load\UdpWriter).
 *
 * Environment: WAMP_URL (ws://127.0.0.1:9090/), WAMP_REALM (realm1),
 * WAMP_OBSERVER_ADDR (127.0.0.1:6666; empty turns logging off),
 * WRITER_CALLS (stop by itself after that many calls).
 *
 * SIGTERM/SIGINT stop it cleanly: the call in hand ends, the session is
 * left, a summary line is printed and it exits 0. Losing the router exits 1.
 */

require __DIR__ . '/autoload.php';

use Wamp\Client;
use Wamp\Load\CallWriter;
use Wamp\Load\Settings;
use Wamp\Load\UdpWriter;
use Wamp\Loop;

$arguments = array_slice($argv, 1);
if ($arguments !== [] && $arguments !== ['--udp']) {
    fwrite(STDERR, "usage: php writer.php [--udp]\n");
    exit(2);
}
try {
    $settings = Settings::fromEnvironment();
    WampObserver::configure($settings->observerAddress);
} catch (InvalidArgumentException $e) {
    fwrite(STDERR, 'writer: ' . $e->getMessage() . "\n");
    exit(2);
}

$started = hrtime(true);
$loop = new Loop();
$exitCode = 0;

if ($arguments === ['--udp']) {
    $writer = new UdpWriter($loop, $settings->callLimit);
    $writer->start(fn () => $loop->stop());
    $stop = fn () => $writer->stop();
} else {
    $client = new Client($loop, $settings->url, $settings->realm, WampObserver::logging() ? 'out' : null);
    $writer = new CallWriter($loop, $client, $settings->callLimit, $settings->callTimeoutMs);
    $joined = false;
    $client->connect(
        function () use ($writer, $client, $loop, &$joined): void {
            $joined = true;
            $writer->start(fn () => $client->leave(fn () => $loop->stop()));
        },
        function (string $reason) use ($loop, $settings, &$exitCode): void {
            fwrite(STDERR, "writer: lost the router at {$settings->url}: $reason\n");
            $exitCode = 1;
            $loop->stop();
        },
    );
    // Before the session is joined there is no call to finish: just leave.
    $stop = function () use ($writer, $client, $loop, &$joined): void {
        if ($joined) {
            $writer->stop();
        } else {
            $client->leave(fn () => $loop->stop());
        }
    };
}
$loop->onSignal(SIGTERM, $stop);
$loop->onSignal(SIGINT, $stop);
$loop->run();

fwrite(STDOUT, $writer->summary((hrtime(true) - $started) / 1e9) . "\n");
if (WampObserver::$dropped > 0) {
    fwrite(STDERR, 'writer: ' . WampObserver::$dropped . " log lines could not be sent\n");
}
exit($exitCode);
