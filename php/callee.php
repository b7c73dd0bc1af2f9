<?php

declare(strict_types=1);

/**
 * The test callee: registers hello1..hello9 on the router and answers like
 * the original tool (see Wamp\Load\HelloCallee), logging its side of every
 * message to the observer with direction "in".
 *
 * Environment: WAMP_URL (ws://127.0.0.1:9090/), WAMP_REALM (realm1),
 * WAMP_OBSERVER_ADDR (127.0.0.1:6666; empty turns logging off).
 *
 * Prints "callee: registered hello1..hello9" once serving, and a summary
 * line on exit. SIGTERM/SIGINT leave the session and exit 0; losing the
 * router exits 1.
 */

require __DIR__ . '/autoload.php';

use Wamp\Client;
use Wamp\Load\HelloCallee;
use Wamp\Load\Settings;
use Wamp\Loop;

try {
    $settings = Settings::fromEnvironment();
    WampObserver::configure($settings->observerAddress);
} catch (InvalidArgumentException $e) {
    fwrite(STDERR, 'callee: ' . $e->getMessage() . "\n");
    exit(2);
}

$started = hrtime(true);
$loop = new Loop();
$client = new Client($loop, $settings->url, $settings->realm, WampObserver::logging() ? 'in' : null);
$callee = new HelloCallee($loop, $client);
$exitCode = 0;

$fail = function (string $why) use ($loop, &$exitCode): void {
    // The first failure is the story; e.g. when another callee holds the
    // procedures, all nine registrations fail at once.
    if ($exitCode !== 0) {
        return;
    }
    fwrite(STDERR, "callee: $why\n");
    $exitCode = 1;
    $loop->stop();
};
$shutdown = fn () => $client->leave(fn () => $loop->stop());
$loop->onSignal(SIGTERM, $shutdown);
$loop->onSignal(SIGINT, $shutdown);

$client->connect(
    fn () => $callee->registerAll(
        fn () => fwrite(STDOUT, 'callee: registered hello1..hello' . HelloCallee::PROCEDURES . "\n"),
        $fail,
    ),
    fn (string $reason) => $fail("lost the router at {$settings->url}: $reason"),
);
$loop->run();

fwrite(STDOUT, $callee->summary((hrtime(true) - $started) / 1e9) . "\n");
if (WampObserver::$dropped > 0) {
    fwrite(STDERR, 'callee: ' . WampObserver::$dropped . " log lines could not be sent\n");
}
exit($exitCode);
